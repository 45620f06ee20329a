// Package capture records a route's traffic as pcapng files that Wireshark,
// tshark and tcpdump open as ordinary TCP captures, before and after the
// plugins.
//
// # Two legs, two links
//
// The tunnel never sees packets: it sees chunks of bytes, per direction,
// inside its chain of hooks. Capture draws them as packets of two synthetic
// TCP connections per proxied connection, one per leg, each on its own
// pcapng interface of the same file:
//
//   - interface 0, "client": the client's connection to the listen address,
//     with the bytes as the client sent them and as it received them;
//   - interface 1, "target": the connection to the target, with the bytes
//     the target received (after every plugin) and those it sent.
//
// [Links] returns the two hooks that see these bytes: put the first at the
// front of the route's chain, the last at its end (see [host.Link]: the
// first link is nearest the client, so it sees client bytes before any
// plugin and server bytes after all of them). "What did my plugin change"
// is then a diff of two streams: in Wireshark, Follow TCP Stream on each,
// or tcp.stream eq N.
//
// # The packets
//
// Each leg starts with SYN, SYN-ACK and ACK (the SYNs announce an MSS of
// 1460, 1440 over IPv6, and window scaling), carries each chunk split at
// the MSS with correct sequence and acknowledgement numbers, acknowledged
// by the peer: by its next packet when that is a reply (as a delayed ACK
// is), else by a pure ACK written before the sender's next packet or when
// the writer flushes; a FIN (and its ACK) for each direction when it ends;
// when the connection ends before both directions did, a RST from the peer
// whose socket failed (a client that reset it: the client's RST on the
// client leg, the tunnel's on the target leg), else from the tunnel (an
// abort, a failed plugin, a shutdown) (host.EndFilter tells the hooks
// which). A filter's Close is the tunnel's FIN on each leg, drawn when the
// chunk's call that closed returns (host.Stream.Closing), or when the
// connection goes for a close from a timer, an End or, on a WireTap
// connection, a client chunk; bytes a filter sends after it (from a timer)
// reach no peer and are not drawn. Frames are Ethernet with
// locally administered addresses (02:00:00:00:LEG:SIDE), IPv4 or IPv6 and
// TCP headers with valid checksums. The client leg runs between the
// client's address and the listen address; the target leg between the
// client's address and the target's, as a transparent proxy would (the
// tunnel's own ephemeral port is not known to the hooks), so both legs of
// one connection share the client's port. The target leg's handshake is
// drawn when the tunnel connected (host.DialFilter), the client leg's when
// the connection opened; a target never connected (a failed dial, a filter
// that closed first) has no target leg. A target given as a host name
// is drawn at the address the tunnel connected to (host.Stream.TargetAddr),
// with the name in the SYN's comment; only a leg drawn before the dial (a
// filter sending toward the target from Opened, the bytes a late-dial
// route holds until its chain names the target) shows 0.0.0.0 (or ::).
// A leg has one address family: an IPv4 client of an IPv6 target is drawn
// on the target leg at its IPv4-mapped address (::ffff:a.b.c.d); an IPv6
// client of an IPv4 target at the listen address if it is IPv4, else
// 0.0.0.0.
//
// Packet comments say what the chain did with a chunk when it did not just
// forward it: "chain: dropped or held", "chain: replaced (N bytes in, M
// bytes reached the target)", "replied N bytes to the client". The first
// SYN of each leg names the connection number and the route.
//
// # Never in the way
//
// The hooks copy each chunk into a bounded queue and return; a goroutine of
// the [Writer] turns the queue into packets and writes them. When the
// queue holds [Options].QueueBytes (default [DefaultQueueBytes]) the
// hooks drop packets instead of waiting: a slow disk costs packets in the
// capture, never throughput in the tunnel. Dropped packets are counted
// ([Writer.Stats]), logged (at once, then at most every 10 s, and at
// Close), and written in each file's interface statistics (ifdrop), as a
// kernel capture reports its drops; packets dropped while no file could be
// written (its directory gone, a full disk) are counted by the next file
// that is. Wireshark then shows "previous segment
// not captured" where bytes are missing: the sequence numbers go on.
//
// The hooks copy a chunk only when the queue has room for it, and the
// target leg shares the client leg's copy when the chain forwarded the
// bytes unchanged. On Linux the writer's thread runs at nice 10, so when
// the CPUs are busy the forwarding gets the time and the capture drops;
// while busy, the writer lets records gather for a couple of milliseconds
// rather than being woken for each.
//
// A route without the links pays nothing: no hook, no queue, its plain
// directions still spliced by the kernel.
//
// # TLS key logs
//
// [KeyLogWriter] is a tls.Config.KeyLogWriter that puts a TLS endpoint's
// secrets (NSS key log format) into the capture, in pcapng Decryption
// Secrets Blocks, so that Wireshark and tshark decrypt the TLS streams of
// the file with no side file. A client logs its handshake secrets only
// after the ServerHello that needs them went by, so while a key log is
// expected the writer holds the packets that follow a ClientHello until
// the session's secrets are written ahead of them (at most
// Options.KeyLogWait). Such a file decrypts its sessions: keep it like the
// keys. Files are created with mode 0600 for that reason. A session is
// decrypted only in the file that holds its handshake: Wireshark finds the
// secrets by the ClientHello's random, so the records of a connection
// carried over into a new file (Options.MaxSize, Writer.Rotate) stay
// encrypted there.
//
// # TLS as it crossed the wire
//
// On a route that terminates TLS (host.Route.TLS) the chain sees
// plaintext, so the client leg would too. [WireTap] (host.Route.WireTap)
// wraps the client's socket under the TLS session and draws the client leg
// from what that session reads and writes: the TLS records as they crossed
// the wire, the handshake included. With the route's KeyLogWriter feeding
// [KeyLogWriter] of the same Writer, Wireshark and tshark decrypt that leg
// from the file alone, in one pass; the target leg is still the plaintext
// after the plugins. The client link then draws nothing on the client leg:
// the client's FIN is drawn when the wire read ends, the tunnel's FIN (or a
// RST) at the connection's teardown, since the tap does not see the
// socket's half-close.
//
// The verdicts on the client's chunks ("chain: replaced", "dropped or
// held", "replied") then go on the target leg, prefixed "client chunk
// (plaintext):": on the first packet the chain sent the target for that
// chunk, or, when none reached it, on the next packet of the target leg.
// Putting them on the wire's packets would need a map from plaintext
// chunks to TLS records that does not exist: a record adds 22 bytes (TLS
// 1.3), a read of the wire may hold several records or part of one, and
// the chunk is read from the session after the ciphertext was drawn.
// Verdicts on the target's chunks stay where they are, on the target leg.
//
// # The sniffer's view
//
// [Dump] prints the client leg's packets as a raw-socket sniffer decodes
// them, layer by layer (tunnel --dump packets).
//
// # Files
//
// [Create] writes to the files Options.Path names (a directive like %Y%m%d
// in the name starts a new file each day), starting a new one past
// Options.MaxSize and keeping the newest Options.MaxFiles. A file is never
// overwritten: a taken name gets a counter (c-1.pcapng). The writer
// flushes whenever its queue is empty, so the file on disk is valid pcapng
// whenever the tunnel is idle, whatever happens to the process next; Close
// adds the interface statistics and closes it. [New] writes one section to
// any io.Writer.
package capture
