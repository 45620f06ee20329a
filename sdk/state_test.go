package sdk

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/tunnelwasm/tunnel/sdk/abi"
)

// The fake host's shared state and metrics: a map and a call count, enough
// to check what the SDK passes and how it decodes the answers.

func (h *fakeHost) StateGet(k, buf []byte) int32 {
	v, ok := h.state[string(k)]
	if !ok {
		return abi.StatusNotFound
	}
	if len(v) <= len(buf) {
		copy(buf, v)
	}
	return int32(len(v))
}

func (h *fakeHost) StateSet(k, v []byte) int32 {
	if len(v) > 300 {
		return abi.StatusTooLarge
	}
	if h.state == nil {
		h.state = map[string][]byte{}
	}
	h.state[string(k)] = append([]byte(nil), v...)
	return abi.StatusOK
}

func (h *fakeHost) StateDelete(k []byte) int32 { delete(h.state, string(k)); return abi.StatusOK }

func (h *fakeHost) StateCAS(k, old, new []byte) int32 {
	if string(h.state[string(k)]) != string(old) {
		return 0
	}
	h.StateSet(k, new)
	return 1
}

func (h *fakeHost) StateAdd(k []byte, delta int64, out []byte) int32 {
	v, ok := h.state[string(k)]
	if !ok {
		v = make([]byte, 8)
		h.StateSet(k, v)
		v = h.state[string(k)]
	}
	n, _ := StateInt(v)
	binary.LittleEndian.PutUint64(v, uint64(n+delta)) // in place: the fake allocates nothing
	binary.LittleEndian.PutUint64(out, uint64(n+delta))
	return abi.StatusOK
}

func (h *fakeHost) MetricDefine(kind int32, name, labels []byte, bounds []float64) int32 {
	h.defined = append(h.defined, string(name)+"{"+string(labels)+"}")
	if string(name) == "bad name" {
		return abi.StatusBadArgument
	}
	return int32(len(h.defined) - 1)
}

func (h *fakeHost) MetricAdd(id int32, delta int64) int32   { h.metricCalls++; return abi.StatusOK }
func (h *fakeHost) MetricSet(id int32, value int64) int32   { h.metricCalls++; return abi.StatusOK }
func (h *fakeHost) MetricObserve(id int32, v float64) int32 { h.metricCalls++; return abi.StatusOK }

// metricsHandler defines its metrics in the factory and uses them per chunk.
type metricsHandler struct {
	DefaultHandler
	c Counter
	g Gauge
	h Histogram
}

func (m *metricsHandler) OnData(c *Conn, dir Direction, data []byte, end bool) Action {
	m.c.Add(int64(len(data)))
	m.g.Set(3)
	m.h.Observe(float64(len(data)))
	if _, err := StateAdd("chunks", 1); err != nil {
		panic(err)
	}
	return Forward
}

func TestMetricsAndStateAllocateNothingPerChunk(t *testing.T) {
	mh := &metricsHandler{}
	withFactory(t, func([]byte) (Plugin, error) {
		mh.c = NewCounter("bytes_total", "dir", "up", "kind", "a=b")
		mh.g = NewGauge("open")
		mh.h = NewHistogram("chunk_bytes", []float64{1, 10, 100})
		return Shared(mh), nil
	})
	h := &fakeHost{}
	in := newInstance(h)
	if rc := in.Init(); rc != abi.OK {
		t.Fatalf("init %d: %s", rc, h.lastErr)
	}
	want := []string{"bytes_total{dir=up\nkind=a=b}", "open{}", "chunk_bytes{}"}
	if len(h.defined) != 3 || h.defined[0] != want[0] || h.defined[1] != want[1] || h.defined[2] != want[2] {
		t.Fatalf("defined %q, want %q", h.defined, want)
	}
	in.OnOpen(1)
	allocs := testing.AllocsPerRun(1000, func() { in.OnData(1, abi.DirClientToServer, 10, 0) })
	if allocs != 0 {
		t.Fatalf("%v allocs per chunk with metrics and StateAdd", allocs)
	}
	if h.metricCalls != 3*1001 {
		t.Fatalf("%d metric calls, want %d", h.metricCalls, 3*1001)
	}
	if n, ok := StateInt(h.state["chunks"]); !ok || n != 1001 {
		t.Fatalf("chunks = %d, %v", n, ok)
	}
}

func TestMetricDefinitionErrors(t *testing.T) {
	var odd, bad, outside Counter
	withFactory(t, func([]byte) (Plugin, error) {
		odd = NewCounter("x_total", "lonely")
		bad = NewCounter("bad name")
		return Shared(DefaultHandler{}), nil
	})
	outside = NewCounter("early_total")
	h := &fakeHost{}
	in := newInstance(h)
	in.Init()
	if !errors.Is(odd.Err(), ErrBadArgument) || !errors.Is(bad.Err(), ErrBadArgument) || !errors.Is(outside.Err(), ErrNotAllowed) {
		t.Fatalf("errors: odd %v, bad %v, outside %v", odd.Err(), bad.Err(), outside.Err())
	}
	if len(h.logs) != 2 {
		t.Fatalf("logs %q, want one line per failed definition", h.logs)
	}
	odd.Add(1) // does nothing, does not panic
	outside.Inc()
	if h.metricCalls != 0 {
		t.Fatalf("%d metric calls from failed definitions", h.metricCalls)
	}
}

func TestStateCalls(t *testing.T) {
	h := &fakeHost{}
	withFactory(t, func([]byte) (Plugin, error) {
		if _, ok := StateGet("k"); ok {
			t.Error("StateGet of a missing key: ok")
		}
		big := make([]byte, 290) // larger than the instance's scratch buffer
		big[289] = 7
		if err := StateSet("k", big); err != nil {
			t.Error(err)
		}
		if v, ok := StateGet("k"); !ok || len(v) != 290 || v[289] != 7 {
			t.Errorf("StateGet = %d bytes, %v", len(v), ok)
		}
		if err := StateSet("k", make([]byte, 301)); !errors.Is(err, ErrTooLarge) {
			t.Errorf("StateSet too large: %v", err)
		}
		if ok, err := StateCompareAndSwap("n", nil, StateValue(5)); !ok || err != nil {
			t.Errorf("CAS on a missing key: %v %v", ok, err)
		}
		if ok, _ := StateCompareAndSwap("n", nil, StateValue(6)); ok {
			t.Error("CAS with a stale old value swapped")
		}
		if n, err := StateAdd("n", -7); n != -2 || err != nil {
			t.Errorf("StateAdd = %d, %v", n, err)
		}
		StateDelete("n")
		if _, ok := StateGet("n"); ok {
			t.Error("deleted key still set")
		}
		return Shared(DefaultHandler{}), nil
	})
	if rc := newInstance(h).Init(); rc != abi.OK {
		t.Fatalf("init %d: %s", rc, h.lastErr)
	}
	if _, err := StateAdd("n", 1); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("StateAdd outside a callback: %v", err)
	}
}
