package builtin_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/host/plugintest"
	"github.com/tunnelwasm/tunnel/internal/config"
)

// TestREADMEConfigs loads the tunnel.hcl block of the gallery plugins'
// READMEs as a user would paste it: it parses, and every plugin accepts
// its config (the built-in modules are instantiated with it).
func TestREADMEConfigs(t *testing.T) {
	ctx := context.Background()
	rt, err := plugin.NewRuntime(ctx, plugin.RuntimeOptions{CacheDir: plugintest.CacheDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(ctx) }) // after the parallel subtests
	for _, name := range []string{"router", "resp", "redact", "ratelimit", "toxics"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// The config instantiates the embedded module: under -race,
			// compiling it here would take ~15 s; a process without the
			// race detector compiles it into the cache instead.
			plugintest.Precompile(unpacked(t, name))
			readme, err := os.ReadFile(filepath.Join("..", name, "README.md"))
			if err != nil {
				t.Fatal(err)
			}
			_, block, ok := strings.Cut(string(readme), "```hcl\n")
			block, _, ok2 := strings.Cut(block, "```")
			if !ok || !ok2 {
				t.Fatalf("no hcl block in plugins/%s/README.md", name)
			}
			path := filepath.Join(t.TempDir(), "tunnel.hcl")
			if err := os.WriteFile(path, []byte(block), 0o644); err != nil {
				t.Fatal(err)
			}
			f, diags := config.Parse(path, config.Options{LookupEnv: func(string) (string, bool) { return "", false }})
			if diags.HasErrors() {
				t.Fatalf("plugins/%s/README.md:\n%s", name, config.FormatDiagnostics(diags, f.Files))
			}
			b := &config.Builder{Runtime: rt, Logger: slog.New(slog.DiscardHandler)}
			set, diags := b.Build(ctx, f, diags)
			if diags.HasErrors() {
				t.Fatalf("plugins/%s/README.md:\n%s", name, config.FormatDiagnostics(diags, f.Files))
			}
			set.Close()
			b.Close(ctx)
		})
	}
}
