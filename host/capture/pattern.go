package capture

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// pattern is a parsed Options.Path: a directory and a file name with
// strftime-like directives.
type pattern struct {
	dir   string
	name  string         // the file name, directives unexpanded
	ext   string         // the extension, where the counter goes before
	timed bool           // the name has a time directive
	match *regexp.Regexp // the names this pattern makes, for MaxFiles
}

// maxCounter bounds the search for a free name.
const maxCounter = 100000

func parsePattern(path string) (*pattern, error) {
	if path == "" {
		return nil, errors.New("empty path")
	}
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	dir = filepath.Clean(dir)
	if strings.Contains(dir, "%") {
		return nil, fmt.Errorf("path %q: directives (%%) are allowed in the file name only, not in its directory", path)
	}
	if name == "" {
		return nil, fmt.Errorf("path %q names a directory, not a file", path)
	}
	p := &pattern{dir: dir, name: name}
	var re strings.Builder
	re.WriteString("^")
	lit := func(s string) { re.WriteString(regexp.QuoteMeta(s)) }
	ext := filepath.Ext(strings.ReplaceAll(name, "%%", "__"))
	stem := name[:len(name)-len(ext)]
	p.ext = ext
	for i := 0; i < len(stem); i++ {
		if stem[i] != '%' {
			lit(stem[i : i+1])
			continue
		}
		if i+1 == len(stem) {
			return nil, fmt.Errorf("path %q ends with a lone %%; write %%%% for a percent sign", path)
		}
		i++
		switch stem[i] {
		case 'Y':
			re.WriteString(`\d{4}`)
			p.timed = true
		case 'm', 'd', 'H', 'M', 'S':
			re.WriteString(`\d{2}`)
			p.timed = true
		case '%':
			lit("%")
		default:
			return nil, fmt.Errorf("path %q: unknown directive %%%c; use %%Y, %%m, %%d, %%H, %%M, %%S or %%%%", path, stem[i])
		}
	}
	re.WriteString(`(?:-\d+)?`)
	lit(ext)
	re.WriteString("$")
	p.match = regexp.MustCompile(re.String())
	return p, nil
}

// expand returns the file name for time t, without a counter.
func (p *pattern) expand(t time.Time) string {
	if !strings.Contains(p.name, "%") {
		return p.name
	}
	var b strings.Builder
	two := func(n int) {
		if n < 10 {
			b.WriteByte('0')
		}
		b.WriteString(strconv.Itoa(n))
	}
	s := p.name
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'Y':
			fmt.Fprintf(&b, "%04d", t.Year())
		case 'm':
			two(int(t.Month()))
		case 'd':
			two(t.Day())
		case 'H':
			two(t.Hour())
		case 'M':
			two(t.Minute())
		case 'S':
			two(t.Second())
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// withCounter inserts -n before the extension of name (n > 0).
func (p *pattern) withCounter(name string, n int) string {
	if n == 0 {
		return name
	}
	stem := name[:len(name)-len(p.ext)]
	return stem + "-" + strconv.Itoa(n) + p.ext
}

// fileMode is a capture file's: its owner's alone, as a key log's. It holds
// the traffic, and a TLS route's with key_log holds the secrets that
// decrypt it (which arrive after the file is made).
const fileMode = 0o600

// create makes a new file for base, with the first free counter from n on.
func (p *pattern) create(base string, n int) (*os.File, string, int, error) {
	for ; n < maxCounter; n++ {
		name := filepath.Join(p.dir, p.withCounter(base, n))
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
		if err == nil {
			return f, name, n, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, "", 0, err
		}
	}
	return nil, "", 0, fmt.Errorf("no free name for %s in %s", base, p.dir)
}

// prune removes the oldest files matching the pattern past MaxFiles,
// never the current one.
func (w *Writer) prune() {
	if w.opts.MaxFiles <= 0 {
		return
	}
	entries, err := os.ReadDir(w.name.dir)
	if err != nil {
		w.log.Warn("capture: listing old files", "dir", w.name.dir, "err", err)
		return
	}
	type old struct {
		name string
		mod  time.Time
	}
	var files []old
	for _, e := range entries {
		if !e.Type().IsRegular() || !w.name.match.MatchString(e.Name()) {
			continue
		}
		name := filepath.Join(w.name.dir, e.Name())
		if inUse.has(name) {
			continue // ours, or another Writer's (the one a reload replaced)
		}
		if !isPcapng(name) {
			continue // a file of the same name's shape that no capture wrote
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		files = append(files, old{name, info.ModTime()})
	}
	slices.SortFunc(files, func(a, b old) int {
		if c := a.mod.Compare(b.mod); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	for len(files)+1 > w.opts.MaxFiles && len(files) > 0 {
		if err := os.Remove(files[0].name); err == nil {
			w.log.Info("capture: removed an old file", "file", files[0].name, "max_files", w.opts.MaxFiles)
		} else if !errors.Is(err, fs.ErrNotExist) {
			w.log.Warn("capture: removing an old file", "file", files[0].name, "err", err)
		}
		files = files[1:]
	}
}

// isPcapng reports whether the file at name starts as a pcapng file does
// (a Section Header Block): max_files removes only files a capture wrote,
// not a user's file whose name happens to match the pattern.
func isPcapng(name string) bool {
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [4]byte
	_, err = io.ReadFull(f, magic[:])
	return err == nil && string(magic[:]) == "\x0a\x0d\x0d\x0a"
}

// inUse is the capture files the Writers of this process have open (by
// absolute path). A reload starts a new Writer on the same path pattern
// while the one it replaces still writes the connections that began under
// it; the new Writer's prune must not remove that file from under them
// (their whole recording would go with it). A file is one Writer's: each
// creates its own (O_EXCL).
var inUse = openNames{names: map[string]bool{}}

type openNames struct {
	mu    sync.Mutex
	names map[string]bool
}

func (o *openNames) key(name string) string {
	if abs, err := filepath.Abs(name); err == nil {
		return abs
	}
	return name
}

func (o *openNames) add(name string) {
	k := o.key(name)
	o.mu.Lock()
	o.names[k] = true
	o.mu.Unlock()
}

func (o *openNames) remove(name string) {
	k := o.key(name)
	o.mu.Lock()
	delete(o.names, k)
	o.mu.Unlock()
}

func (o *openNames) has(name string) bool {
	k := o.key(name)
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.names[k]
}
