package config

import (
	"io"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/capture"
)

// captureTLS makes a route that terminates TLS, captures into w and keeps a
// key_log record its client leg as it crossed the wire: the TLS records
// (host.Route.WireTap), with the session secrets written into the capture
// as well as into the key_log file, so that Wireshark and tshark decrypt
// the client leg from the file alone. The target leg stays the plaintext
// after the plugins. Without a key_log nothing changes: the client leg is
// the plaintext the client sent, as on any route.
//
// The route's tls.Config is cached across reloads (its session ticket
// keys); this route version gets a clone whose KeyLogWriter also feeds w.
// The clone makes its own automatic session ticket keys, so on such a
// (debugging) route a session does not resume across a reload.
func captureTLS(r *Route, hr *host.Route, w *capture.Writer) {
	if hr.TLS == nil || r.TLS == nil || r.TLS.KeyLog == "" {
		return
	}
	cfg := hr.TLS.Clone()
	if cfg.KeyLogWriter != nil {
		cfg.KeyLogWriter = io.MultiWriter(cfg.KeyLogWriter, capture.KeyLogWriter(w))
	} else {
		cfg.KeyLogWriter = capture.KeyLogWriter(w)
	}
	hr.TLS = cfg
	hr.WireTap = capture.WireTap(w)
}
