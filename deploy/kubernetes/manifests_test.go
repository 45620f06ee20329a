package kubernetes

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/host/plugintest"
	"github.com/tunnelwasm/tunnel/internal/config"
	"github.com/tunnelwasm/tunnel/plugins/builtin"
)

// The parts of the manifests the test reads.
type (
	object struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name   string            `yaml:"name"`
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Data map[string]string `yaml:"data"`
		Spec yaml.Node         `yaml:"spec"`
	}
	deploymentSpec struct {
		Replicas int `yaml:"replicas"`
		Strategy struct {
			RollingUpdate struct {
				MaxUnavailable int `yaml:"maxUnavailable"`
			} `yaml:"rollingUpdate"`
		} `yaml:"strategy"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				TerminationGracePeriodSeconds int         `yaml:"terminationGracePeriodSeconds"`
				Containers                    []container `yaml:"containers"`
				Volumes                       []struct {
					Name      string `yaml:"name"`
					ConfigMap *struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	}
	container struct {
		Name  string   `yaml:"name"`
		Args  []string `yaml:"args"`
		Env   []struct{ Name, Value string }
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		ReadinessProbe probe `yaml:"readinessProbe"`
		LivenessProbe  probe `yaml:"livenessProbe"`
		Lifecycle      struct {
			PreStop struct {
				Sleep struct {
					Seconds int `yaml:"seconds"`
				} `yaml:"sleep"`
			} `yaml:"preStop"`
		} `yaml:"lifecycle"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
		} `yaml:"volumeMounts"`
	}
	probe struct {
		HTTPGet *struct {
			Path string    `yaml:"path"`
			Port yaml.Node `yaml:"port"`
		} `yaml:"httpGet"`
	}
	serviceSpec struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string    `yaml:"name"`
			Port       int       `yaml:"port"`
			TargetPort yaml.Node `yaml:"targetPort"`
		} `yaml:"ports"`
	}
)

// load parses every YAML document of the directory's manifests, strictly:
// a misspelt field of the parts read is an error.
func load(t *testing.T) map[string]object {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) != 3 {
		t.Fatalf("manifests: %v, %v; want configmap, deployment and service", files, err)
	}
	out := map[string]object{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var o object
			if err := dec.Decode(&o); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if o.Kind == "" || o.APIVersion == "" || o.Metadata.Name == "" {
				t.Fatalf("%s: a document without kind, apiVersion or name", f)
			}
			out[o.Kind] = o
		}
	}
	return out
}

func decodeSpec(t *testing.T, o object, v any) {
	t.Helper()
	if err := o.Spec.Decode(v); err != nil {
		t.Fatalf("%s spec: %v", o.Kind, err)
	}
}

// resolvePort turns a probe's or a Service's port (a number or a port name
// of the container) into a number.
func resolvePort(t *testing.T, n yaml.Node, c container) int {
	t.Helper()
	if p, err := strconv.Atoi(n.Value); err == nil {
		return p
	}
	for _, p := range c.Ports {
		if p.Name == n.Value {
			return p.ContainerPort
		}
	}
	t.Fatalf("port %q is not a port of container %s", n.Value, c.Name)
	return 0
}

func port(t *testing.T, hostport string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// TestManifests: the ConfigMap's tunnel.hcl passes the tunnel's validation
// (plugins compiled, their configs checked); the Deployment runs 2+
// replicas with the ConfigMap mounted where --config reads it, probes
// /readyz and /healthz on the admin block's port, and gives a stopping pod
// enough time for preStop, drain_delay and --grace; the Service sends its
// port to the route's listen port and selects the pods.
func TestManifests(t *testing.T) {
	objs := load(t)
	cm, dep, svc := objs["ConfigMap"], objs["Deployment"], objs["Service"]
	src := cm.Data["tunnel.hcl"]
	if src == "" {
		t.Fatalf("the ConfigMap has no tunnel.hcl")
	}

	// The tunnel's validation, as `tunnel validate` runs it.
	dir := t.TempDir()
	path := filepath.Join(dir, "tunnel.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	f, diags := config.Parse(path, config.Options{})
	// The built-in Go guests compile in ~3 s, ten times that under -race:
	// precompiled outside it into plugintest's cache of this test run.
	for _, p := range f.Plugins {
		if b, err := builtin.Wasm(p.Builtin); p.Builtin != "" && err == nil {
			plugintest.Precompile(b)
		}
	}
	rt, err := plugin.NewRuntime(ctx, plugin.RuntimeOptions{CacheDir: plugintest.CacheDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(ctx)
	b := &config.Builder{Runtime: rt, Logger: slog.New(slog.DiscardHandler)}
	set, bdiags := b.Build(ctx, f, diags)
	set.Close()
	b.Close(ctx)
	if all := append(diags, bdiags...); all.HasErrors() || set == nil {
		t.Fatalf("tunnel.hcl of the ConfigMap does not validate:\n%s", config.FormatDiagnostics(all, f.Files))
	}
	if f.Admin == nil || len(f.Routes) != 1 {
		t.Fatalf("tunnel.hcl: admin block %v, %d routes; want an admin block and one route", f.Admin, len(f.Routes))
	}
	adminPort, routePort := port(t, f.Admin.Listen), port(t, f.Routes[0].Listen)

	var d deploymentSpec
	decodeSpec(t, dep, &d)
	if d.Replicas < 2 || d.Strategy.RollingUpdate.MaxUnavailable != 0 {
		t.Errorf("replicas %d, maxUnavailable %d; want 2 or more and 0", d.Replicas, d.Strategy.RollingUpdate.MaxUnavailable)
	}
	for k, v := range d.Selector.MatchLabels {
		if d.Template.Metadata.Labels[k] != v {
			t.Errorf("the pods' labels %v do not match the selector %v", d.Template.Metadata.Labels, d.Selector.MatchLabels)
		}
	}
	if len(d.Template.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(d.Template.Spec.Containers))
	}
	c := d.Template.Spec.Containers[0]
	for _, p := range []struct {
		name string
		pr   probe
		path string
	}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
		if p.pr.HTTPGet == nil {
			t.Errorf("no %s probe over HTTP", p.name)
			continue
		}
		if p.pr.HTTPGet.Path != p.path || resolvePort(t, p.pr.HTTPGet.Port, c) != adminPort {
			t.Errorf("%s probe GET %s on port %d, want %s on the admin port %d", p.name, p.pr.HTTPGet.Path, resolvePort(t, p.pr.HTTPGet.Port, c), p.path, adminPort)
		}
	}

	// --config names the mounted ConfigMap's tunnel.hcl.
	i := slices.Index(c.Args, "--config")
	if i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("args %v: no --config", c.Args)
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		for _, v := range d.Template.Spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil && v.ConfigMap.Name == cm.Metadata.Name && filepath.Join(m.MountPath, "tunnel.hcl") == c.Args[i+1] {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Errorf("--config %s is not the tunnel.hcl of ConfigMap %s mounted in the container", c.Args[i+1], cm.Metadata.Name)
	}

	// A stopping pod: preStop, then drain_delay, then --grace, then exit;
	// the kubelet must not kill it before.
	grace := 10 * time.Second // the tunnel's default
	if j := slices.Index(c.Args, "--grace"); j >= 0 && j+1 < len(c.Args) {
		if grace, err = time.ParseDuration(c.Args[j+1]); err != nil {
			t.Fatalf("--grace %s: %v", c.Args[j+1], err)
		}
	}
	preStop := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	need := preStop + f.Admin.DrainDelay + grace
	period := time.Duration(d.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	if period < need+time.Second || period > need+30*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v; want a little more than preStop %v + drain_delay %v + --grace %v = %v", period, preStop, f.Admin.DrainDelay, grace, need)
	}
	if preStop == 0 || f.Admin.DrainDelay == 0 {
		t.Errorf("preStop %v, drain_delay %v: a pod would stop accepting before the balancers forget it", preStop, f.Admin.DrainDelay)
	}

	var s serviceSpec
	decodeSpec(t, svc, &s)
	if len(s.Ports) != 1 || resolvePort(t, s.Ports[0].TargetPort, c) != routePort {
		t.Errorf("the Service's ports %+v do not lead to the route's port %d", s.Ports, routePort)
	}
	for _, p := range s.Ports {
		if resolvePort(t, p.TargetPort, c) == adminPort {
			t.Errorf("the Service exposes the admin port")
		}
	}
	for k, v := range s.Selector {
		if d.Template.Metadata.Labels[k] != v {
			t.Errorf("the Service's selector %v does not select the pods %v", s.Selector, d.Template.Metadata.Labels)
		}
	}
}
