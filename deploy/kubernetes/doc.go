// Package kubernetes holds the Kubernetes manifests of the tunnel (a
// Deployment, a Service and a ConfigMap with tunnel.hcl) and the test that
// checks them against each other and against the tunnel's own validation,
// since no cluster is at hand where they are written. It has no code.
package kubernetes
