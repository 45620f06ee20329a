package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/internal/tlsconf"
)

// tlsFlags are the plain mode's TLS and PROXY-in flags; tunnel.hcl has the
// full settings (tls, upstream_tls, accept_proxy blocks and attributes).
type tlsFlags struct {
	cert, key   string // --tls-cert, --tls-key: terminate TLS
	clientCA    string // --tls-client-ca: mutual TLS, any client the CA signed
	upstream    bool   // --upstream-tls: originate TLS toward --to
	upstreamCA  string // --upstream-ca: verify the target against this CA (implies --upstream-tls)
	acceptProxy string // --accept-proxy CIDR,...: read PROXY headers from these networks

	trusted []netip.Prefix // acceptProxy, parsed by check
}

func (t *tlsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.cert, "tls-cert", "", "terminate TLS with this certificate `file` (PEM, leaf first); needs --tls-key")
	fs.StringVar(&t.key, "tls-key", "", "the private key `file` (PEM) of --tls-cert")
	fs.StringVar(&t.clientCA, "tls-client-ca", "", "require client certificates signed by the CAs in this PEM `file` (mutual TLS; any certificate they signed is let in)")
	boolVar(fs, &t.upstream, "upstream-tls", false, "speak TLS to the target (verified against the system's roots and the --to host name)")
	fs.StringVar(&t.upstreamCA, "upstream-ca", "", "verify the target's certificate against the CAs in this PEM `file` (implies --upstream-tls)")
	fs.StringVar(&t.acceptProxy, "accept-proxy", "", "read a PROXY v1/v2 header from clients in these `networks` (comma-separated CIDRs, e.g. 10.0.0.0/8) and refuse others")
}

// given names the first of these flags set, or "".
func (t *tlsFlags) given() string {
	for _, f := range []struct{ name, v string }{
		{"--tls-cert", t.cert}, {"--tls-key", t.key}, {"--tls-client-ca", t.clientCA},
		{"--upstream-ca", t.upstreamCA}, {"--accept-proxy", t.acceptProxy},
	} {
		if f.v != "" {
			return f.name
		}
	}
	if t.upstream {
		return "--upstream-tls"
	}
	return ""
}

// check reports flags that do not go together, and parses --accept-proxy.
func (t *tlsFlags) check() error {
	switch {
	case t.cert != "" && t.key == "":
		return errors.New("--tls-cert needs --tls-key (the certificate's private key)")
	case t.key != "" && t.cert == "":
		return errors.New("--tls-key needs --tls-cert")
	case t.clientCA != "" && t.cert == "":
		return errors.New("--tls-client-ca needs --tls-cert and --tls-key: client certificates are asked for in a TLS handshake the tunnel terminates")
	}
	t.trusted = nil
	if t.acceptProxy != "" {
		for _, s := range strings.Split(t.acceptProxy, ",") {
			s = strings.TrimSpace(s)
			p, err := netip.ParsePrefix(s)
			if err != nil {
				a, aerr := netip.ParseAddr(s)
				if aerr != nil {
					return fmt.Errorf("--accept-proxy: %q is not a network; write CIDRs such as 10.0.0.0/8,fd00::/8", s)
				}
				a = a.Unmap()
				p = netip.PrefixFrom(a, a.BitLen())
			}
			t.trusted = append(t.trusted, p.Masked())
		}
	}
	return nil
}

// apply loads the certificates into route.
func (t *tlsFlags) apply(route *host.Route, logger *slog.Logger) error {
	if t.cert != "" {
		s := tlsconf.ServerSettings{Cert: t.cert, Key: t.key, ClientCA: t.clientCA, Logger: logger}
		if t.clientCA != "" {
			s.Allow = tlsconf.Allow{All: true}
		}
		cfg, err := tlsconf.Server(s)
		if err != nil {
			return err
		}
		route.TLS = cfg
	}
	if t.upstream || t.upstreamCA != "" {
		cfg, err := tlsconf.Client(tlsconf.ClientSettings{CA: t.upstreamCA, Logger: logger})
		if err != nil {
			return err
		}
		route.UpstreamTLS = cfg
	}
	if len(t.trusted) > 0 {
		route.AcceptProxy = true
		route.TrustedProxies = t.trusted
	}
	return nil
}
