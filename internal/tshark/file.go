package tshark

import (
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// DefaultFields are the fields every File reads for each packet; Open
// takes more.
var DefaultFields = []string{
	"frame.number", "frame.interface_id", "frame.comment",
	"ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
	"tcp.stream", "tcp.srcport", "tcp.dstport", "tcp.len", "tcp.ack",
	"tcp.flags.str", "tcp.flags.syn", "tcp.flags.ack", "tcp.flags.fin", "tcp.flags.reset",
	"tls.handshake.type",
	// What CheckClean looks at.
	"ip.checksum.status", "tcp.checksum.status", "tcp.analysis.flags", "_ws.expert.message",
}

// followFirst is how many TCP streams (0 to followFirst-1) the first run
// follows on the way; a file with more gets a second run for the rest
// when one of them is asked for.
const followFirst = 16

// File is a capture file as tshark dissects it, read once: the fields of
// every packet (tshark -T fields, no display filter) and "Follow TCP
// Stream" of its streams (-z follow,tcp,raw,N) come from one tshark run,
// made on the first question, so that a test asking several things of a
// file starts tshark once rather than once per question. The IP and TCP
// checksums are validated (as CheckClean wants), which changes nothing
// in a file whose checksums are right.
//
// A File is for the goroutine of the test that opened it.
type File struct {
	t      testing.TB
	path   string
	args   []string
	fields []string
	col    map[string]int

	mu      sync.Mutex
	read    bool
	packets []Packet
	streams map[int]Stream // the follow outputs so far, by tcp.stream
	asked   int            // streams 0 to asked-1 were followed
}

// Open returns file as tshark reads it, with fields beyond DefaultFields
// (e.g. "tcp.payload") in each Packet. tshark runs on the first question.
func Open(t testing.TB, file string, fields ...string) *File {
	t.Helper()
	return OpenWith(t, file, Options{Fields: fields})
}

// Options are what OpenWith reads beyond what Open does.
type Options struct {
	// Fields are read for each packet besides DefaultFields.
	Fields []string
	// Args are tshark options that change the dissection of the whole
	// file, e.g. {"-d", "tcp.port==8443,tls"}.
	Args []string
}

// OpenWith is Open with o.
func OpenWith(t testing.TB, file string, o Options) *File {
	t.Helper()
	f := &File{t: t, path: file, args: o.Args, col: map[string]int{}, streams: map[int]Stream{}}
	for _, name := range append(append([]string(nil), DefaultFields...), o.Fields...) {
		if _, dup := f.col[name]; !dup {
			f.col[name] = len(f.fields)
			f.fields = append(f.fields, name)
		}
	}
	return f
}

// Packet is one packet's fields as tshark -T fields prints them: "" for
// a field the packet does not have, the occurrences of a repeated field
// joined by commas.
type Packet struct {
	f    *File
	vals []string
}

// Get returns field's value; a field the File was not opened with fails
// the test.
func (p Packet) Get(field string) string {
	p.f.t.Helper()
	i, ok := p.f.col[field]
	if !ok {
		p.f.t.Fatalf("tshark: field %q is not read from %s; add it to tshark.Open", field, p.f.path)
	}
	return p.vals[i]
}

// Has reports whether the packet has field.
func (p Packet) Has(field string) bool {
	p.f.t.Helper()
	return p.Get(field) != ""
}

// Is reports whether an occurrence of field is want, as the display
// filter "field == want" does.
func (p Packet) Is(field, want string) bool {
	p.f.t.Helper()
	v := p.Get(field)
	if v == "" {
		return false
	}
	for _, o := range strings.Split(v, ",") {
		if o == want || (want == "1" && o == "True") || (want == "0" && o == "False") {
			return true
		}
	}
	return false
}

// Bytes returns a field of bytes (e.g. tcp.payload), nil when the packet
// does not have it; a value that is not hex fails the test.
func (p Packet) Bytes(field string) []byte {
	p.f.t.Helper()
	v := p.Get(field)
	if v == "" {
		return nil
	}
	b, err := hex.DecodeString(strings.ReplaceAll(v, ":", ""))
	if err != nil {
		p.f.t.Fatalf("tshark: %s of frame %s in %s is %q, not hex: %v", field, p.Get("frame.number"), p.f.path, v, err)
	}
	return b
}

// Payload returns the bytes of the packet's TCP segment (tcp.payload,
// which the File must be opened with), nil when it has none; a segment
// whose tcp.payload is missing or shorter than tcp.len fails the test,
// so that a search of every packet's payload misses no byte.
func (p Packet) Payload() []byte {
	p.f.t.Helper()
	b, n := p.Bytes("tcp.payload"), p.Int("tcp.len")
	if len(b) != n {
		p.f.t.Fatalf("tshark: frame %s in %s has tcp.len %d and %d bytes of tcp.payload", p.Get("frame.number"), p.f.path, n, len(b))
	}
	return b
}

// Int returns field as a number, 0 when the packet does not have it; a
// value that is not one number fails the test.
func (p Packet) Int(field string) int {
	p.f.t.Helper()
	v := p.Get(field)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		p.f.t.Fatalf("tshark: %s of frame %s in %s is %q, not a number", field, p.Get("frame.number"), p.f.path, v)
	}
	return n
}

// Line returns fields' values separated by tabs, as a line of tshark -T
// fields -e ... prints them.
func (p Packet) Line(fields ...string) string {
	p.f.t.Helper()
	vals := make([]string, len(fields))
	for i, name := range fields {
		vals[i] = p.Get(name)
	}
	return strings.Join(vals, "\t")
}

// Packets returns every packet of the file, in order.
func (f *File) Packets() []Packet {
	f.t.Helper()
	f.load()
	return f.packets
}

// Fields returns, one line per packet keep accepts (all when nil), the
// given fields separated by tabs: what tshark -Y filter -T fields -e ...
// prints for the display filter keep stands for.
func (f *File) Fields(keep func(Packet) bool, fields ...string) []string {
	f.t.Helper()
	var lines []string
	for _, p := range f.Packets() {
		if keep == nil || keep(p) {
			lines = append(lines, p.Line(fields...))
		}
	}
	return lines
}

// Interface returns a filter keeping the packets of interface id (a
// capture leg), as "frame.interface_id == id" does.
func Interface(id int) func(Packet) bool {
	return func(p Packet) bool { return p.Is("frame.interface_id", strconv.Itoa(id)) }
}

// CheckClean fails the test when tshark, validating checksums, finds a bad
// IP or TCP checksum, or flags any TCP analysis problem (lost or
// out-of-order segments, bad ACKs, window trouble).
func (f *File) CheckClean() {
	f.t.Helper()
	if bad := f.unclean(); len(bad) != 0 {
		f.t.Errorf("tshark flags %d packet(s) of %s, the first: %q", len(bad), f.path, bad[:min(5, len(bad))])
	}
}

// uncleanFilter is the display filter unclean stands for.
const uncleanFilter = "(ip && ip.checksum.status != 1) || tcp.checksum.status != 1 || tcp.analysis.flags"

// unclean returns the frame number and expert messages of the packets
// uncleanFilter selects.
func (f *File) unclean() []string {
	f.t.Helper()
	notGood := func(p Packet, field string) bool {
		v := p.Get(field)
		return v != "" && strings.Trim(strings.ReplaceAll(v, "1", ""), ",") != ""
	}
	return f.Fields(func(p Packet) bool {
		return notGood(p, "ip.checksum.status") || notGood(p, "tcp.checksum.status") || p.Has("tcp.analysis.flags")
	}, "frame.number", "_ws.expert.message")
}

// FollowIndex returns TCP stream number n (tcp.stream eq n) as "Follow
// TCP Stream" shows it; a stream the file does not have fails the test.
func (f *File) FollowIndex(n int) Stream {
	f.t.Helper()
	seen := false
	for _, p := range f.Packets() {
		seen = seen || p.Is("tcp.stream", strconv.Itoa(n))
	}
	if !seen {
		f.t.Fatalf("tshark: %s has no packet of TCP stream %d", f.path, n)
	}
	if n >= f.asked {
		f.followRest()
	}
	s, ok := f.streams[n]
	if !ok {
		f.t.Fatalf("tshark -r %s: no follow output for TCP stream %d", f.path, n)
	}
	return s
}

// Follow returns the TCP stream between a and b ("ip:port" each; IPv6 as
// "[::1]:80"): the one stream whose packets go between these two
// endpoints, either way. None, or more than one, fails the test.
func (f *File) Follow(a, b string) Stream {
	f.t.Helper()
	found := map[int]bool{}
	var order []int
	for _, p := range f.Packets() {
		if !p.Has("tcp.stream") {
			continue
		}
		src, dst := p.endpoint("src"), p.endpoint("dst")
		if (src == a && dst == b) || (src == b && dst == a) {
			n := p.Int("tcp.stream")
			if !found[n] {
				found[n] = true
				order = append(order, n)
			}
		}
	}
	if len(order) != 1 {
		f.t.Fatalf("tshark: %d TCP streams %v between %s and %s in %s, want one", len(order), order, a, b, f.path)
	}
	return f.FollowIndex(order[0])
}

// endpoint is the packet's source or destination ("src", "dst") as
// ip:port, [ipv6]:port.
func (p Packet) endpoint(end string) string {
	p.f.t.Helper()
	host := p.Get("ip." + end)
	if host == "" {
		host = p.Get("ipv6." + end)
	}
	return net.JoinHostPort(host, p.Get("tcp."+end+"port"))
}

// load makes the first run, once: fields of every packet, and the first
// followFirst streams.
func (f *File) load() {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.read {
		return
	}
	args := append(f.dissection(), "-T", "fields", "-E", "header=y", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,")
	for _, name := range f.fields {
		args = append(args, "-e", name)
	}
	args = append(args, followArgs(0, followFirst)...)
	out := Run(f.t, f.path, args...)
	table, follows, _ := strings.Cut(out, "\n"+followRule+"\n")
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	if lines[0] != strings.Join(f.fields, "\t") {
		f.t.Fatalf("tshark -r %s: header %q, want %q", f.path, lines[0], strings.Join(f.fields, "\t"))
	}
	for _, l := range lines[1:] {
		vals := strings.Split(l, "\t")
		if len(vals) != len(f.fields) {
			f.t.Fatalf("tshark -r %s: %d fields in line %q, want %d", f.path, len(vals), l, len(f.fields))
		}
		f.packets = append(f.packets, Packet{f: f, vals: vals})
	}
	f.addFollows(followRule + "\n" + follows)
	f.asked = followFirst
	f.read = true
}

// followRest follows the streams from f.asked to the last one, in a
// second run.
func (f *File) followRest() {
	f.t.Helper()
	last := 0
	for _, p := range f.packets {
		if p.Has("tcp.stream") {
			last = max(last, p.Int("tcp.stream"))
		}
	}
	if last < f.asked {
		return
	}
	f.addFollows(Run(f.t, f.path, append(append(f.dissection(), "-q"), followArgs(f.asked, last+1)...)...))
	f.asked = last + 1
}

// dissection is the options of every run: checksums validated, and the
// File's Args.
func (f *File) dissection() []string {
	return append([]string{"-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE"}, f.args...)
}

// followRule is the line around each -z follow output.
const followRule = "==================================================================="

// followArgs asks for the streams from to to-1.
func followArgs(from, to int) []string {
	var args []string
	for n := from; n < to; n++ {
		args = append(args, "-z", fmt.Sprintf("follow,tcp,raw,%d", n))
	}
	return args
}

// addFollows parses the -z follow,tcp,raw,N outputs in out (a stream the
// file does not have shows as nodes ":0"; FollowIndex does not ask for it).
func (f *File) addFollows(out string) {
	f.t.Helper()
	var blocks []string
	for _, l := range strings.SplitAfter(out, "\n") {
		if strings.HasPrefix(l, "Follow: ") {
			blocks = append(blocks, "")
		}
		if len(blocks) > 0 {
			blocks[len(blocks)-1] += l
		}
	}
	for _, b := range blocks {
		_, rest, ok := strings.Cut(b, "\nFilter: tcp.stream eq ")
		num, _, _ := strings.Cut(rest, "\n")
		n, err := strconv.Atoi(num)
		if !ok || err != nil {
			f.t.Fatalf("tshark -r %s: a follow output without its stream number:\n%s", f.path, b)
		}
		s, err := ParseFollow(b)
		if err != nil {
			f.t.Fatalf("tshark -r %s: follow %d: %v\n%s", f.path, n, err, b)
		}
		f.streams[n] = s
	}
}
