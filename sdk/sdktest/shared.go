package sdktest

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/tunnelwasm/tunnel/sdk/abi"
)

// This file emulates the plugin-wide powers of ABI v2: the shared state
// (state_*) and metrics (metric_*). The emulated plugin is one instance,
// so its connections share one store, as the instances of a plugin do on
// the host. The bounds are the host's defaults.

// An Inspector reads a started plugin's shared state and metrics, as the
// host keeps them. The native emulator implements it, and so does
// host/plugintest; use [State] and [Metric], which fail the test when the
// Plugin is not an Inspector.
type Inspector interface {
	// State returns the value of key in the plugin's shared state.
	State(key string) ([]byte, bool)
	// Metric returns the series of the plugin's metric name (as the
	// plugin defined it, without the host's prefix) with the given label
	// name, value pairs, in the order the plugin gave them.
	Metric(name string, labels ...string) (MetricValue, bool)
}

// MetricValue is the value of one metric series.
type MetricValue struct {
	// Kind is abi.MetricCounter, abi.MetricGauge or abi.MetricHistogram.
	Kind int32
	// Value is a counter's or gauge's value.
	Value int64
	// Count, Sum and Buckets describe a histogram: the number and sum of
	// the observations, and how many fell at or below each bound
	// (cumulative, as Prometheus counts them; the +Inf bucket is Count).
	Count   uint64
	Sum     float64
	Buckets []uint64
}

// State returns the value of key in the shared state of p.
func State(t testing.TB, p Plugin, key string) ([]byte, bool) {
	t.Helper()
	i, ok := p.(Inspector)
	if !ok {
		t.Fatalf("sdktest: %T cannot read the plugin's shared state", p)
	}
	return i.State(key)
}

// Metric returns the series of p's metric name with the given label name,
// value pairs, and fails the test when p has not defined it.
func Metric(t testing.TB, p Plugin, name string, labels ...string) MetricValue {
	t.Helper()
	i, ok := p.(Inspector)
	if !ok {
		t.Fatalf("sdktest: %T cannot read the plugin's metrics", p)
	}
	v, ok := i.Metric(name, labels...)
	if !ok {
		t.Fatalf("sdktest: the plugin defined no metric %s%v", name, labels)
	}
	return v
}

// emuShared is the emulated plugin-wide store; guarded by callMu.
type emuShared struct {
	state   map[string][]byte
	total   int
	metrics []*emuMetric
}

type emuMetric struct {
	kind   int32
	name   string
	labels []abi.Label
	bounds []float64
	v      MetricValue
}

func (s *emuShared) fits(key []byte, value []byte) int32 {
	old, ok := s.state[string(key)]
	total := s.total + len(value)
	if ok {
		total -= len(old)
	} else {
		total += len(key)
	}
	if len(value) > abi.DefaultStateMaxValueLen || total > abi.DefaultStateMaxTotal {
		return abi.StatusTooLarge
	}
	return abi.StatusOK
}

func (s *emuShared) put(key, value []byte) {
	if s.state == nil {
		s.state = map[string][]byte{}
	}
	if old, ok := s.state[string(key)]; ok {
		s.total -= len(key) + len(old)
		delete(s.state, string(key))
	}
	if len(value) > 0 {
		s.state[string(key)] = bytes.Clone(value)
		s.total += len(key) + len(value)
	}
}

func validStateKey(key []byte) bool { return len(key) >= 1 && len(key) <= abi.MaxStateKeyLen }

// guest.Host: the shared state.

func (p *emuPlugin) StateGet(key, buf []byte) int32 {
	if !validStateKey(key) {
		return abi.StatusBadArgument
	}
	v, ok := p.shared.state[string(key)]
	if !ok {
		return abi.StatusNotFound
	}
	if len(v) <= len(buf) {
		copy(buf, v)
	}
	return int32(len(v))
}

func (p *emuPlugin) StateSet(key, value []byte) int32 {
	if !validStateKey(key) {
		return abi.StatusBadArgument
	}
	if st := p.shared.fits(key, value); st != abi.StatusOK {
		return st
	}
	p.shared.put(key, value)
	return abi.StatusOK
}

func (p *emuPlugin) StateDelete(key []byte) int32 {
	if !validStateKey(key) {
		return abi.StatusBadArgument
	}
	if _, ok := p.shared.state[string(key)]; !ok {
		return abi.StatusNotFound
	}
	p.shared.put(key, nil)
	return abi.StatusOK
}

func (p *emuPlugin) StateCAS(key, old, new []byte) int32 {
	if !validStateKey(key) {
		return abi.StatusBadArgument
	}
	if cur := p.shared.state[string(key)]; !bytes.Equal(cur, old) {
		return 0
	}
	if st := p.shared.fits(key, new); st != abi.StatusOK {
		return st
	}
	p.shared.put(key, new)
	return 1
}

func (p *emuPlugin) StateAdd(key []byte, delta int64, out []byte) int32 {
	if !validStateKey(key) || len(out) < 8 {
		return abi.StatusBadArgument
	}
	var n int64
	if cur, ok := p.shared.state[string(key)]; ok {
		if len(cur) != 8 {
			return abi.StatusBadArgument
		}
		n = int64(binary.LittleEndian.Uint64(cur))
	}
	v := binary.LittleEndian.AppendUint64(nil, uint64(n+delta))
	if st := p.shared.fits(key, v); st != abi.StatusOK {
		return st
	}
	p.shared.put(key, v)
	copy(out, v)
	return abi.StatusOK
}

// guest.Host: metrics.

func (p *emuPlugin) MetricDefine(kind int32, name, labels []byte, bounds []float64) int32 {
	if kind < abi.MetricCounter || kind > abi.MetricHistogram || !abi.ValidMetricName(name, abi.MaxMetricNameLen) {
		return abi.StatusBadArgument
	}
	ls, st := abi.ParseLabels(labels)
	if st != abi.StatusOK {
		return st
	}
	if kind == abi.MetricHistogram {
		if st := abi.CheckBounds(bounds); st != abi.StatusOK {
			return st
		}
	} else if len(bounds) > 0 {
		return abi.StatusBadArgument
	}
	for i, m := range p.shared.metrics {
		if m.name != string(name) {
			continue
		}
		if m.kind != kind || !sameNames(m.labels, ls) || !slices.Equal(m.bounds, bounds) {
			return abi.StatusAlreadySet
		}
		if slices.Equal(m.labels, ls) {
			return int32(i)
		}
	}
	if len(p.shared.metrics) >= abi.MaxMetrics {
		return abi.StatusTooLarge
	}
	m := &emuMetric{kind: kind, name: string(name), labels: ls, bounds: slices.Clone(bounds)}
	m.v.Kind = kind
	if kind == abi.MetricHistogram {
		m.v.Buckets = make([]uint64, len(bounds))
	}
	p.shared.metrics = append(p.shared.metrics, m)
	return int32(len(p.shared.metrics) - 1)
}

func sameNames(a, b []abi.Label) bool {
	return slices.EqualFunc(a, b, func(x, y abi.Label) bool { return x.Name == y.Name })
}

func (p *emuPlugin) metric(id int32, kinds ...int32) *emuMetric {
	if id < 0 || int(id) >= len(p.shared.metrics) {
		return nil
	}
	m := p.shared.metrics[id]
	if !slices.Contains(kinds, m.kind) {
		return nil
	}
	return m
}

func (p *emuPlugin) MetricAdd(id int32, delta int64) int32 {
	m := p.metric(id, abi.MetricCounter, abi.MetricGauge)
	if m == nil || m.kind == abi.MetricCounter && delta < 0 {
		return abi.StatusBadArgument
	}
	m.v.Value += delta
	return abi.StatusOK
}

func (p *emuPlugin) MetricSet(id int32, value int64) int32 {
	m := p.metric(id, abi.MetricGauge)
	if m == nil {
		return abi.StatusBadArgument
	}
	m.v.Value = value
	return abi.StatusOK
}

func (p *emuPlugin) MetricObserve(id int32, value float64) int32 {
	m := p.metric(id, abi.MetricHistogram)
	if m == nil || !abi.ValidObservation(value) {
		return abi.StatusBadArgument
	}
	m.v.Count++
	m.v.Sum += value
	for i, b := range m.bounds {
		if value <= b {
			m.v.Buckets[i]++
		}
	}
	return abi.StatusOK
}

// Inspector.

func (p *emuPlugin) State(key string) ([]byte, bool) {
	callMu.Lock()
	defer callMu.Unlock()
	v, ok := p.shared.state[key]
	return bytes.Clone(v), ok
}

func (p *emuPlugin) Metric(name string, labels ...string) (MetricValue, bool) {
	callMu.Lock()
	defer callMu.Unlock()
	for _, m := range p.shared.metrics {
		if m.name == name && labelsMatch(m.labels, labels) {
			v := m.v
			v.Buckets = slices.Clone(v.Buckets)
			return v, true
		}
	}
	return MetricValue{}, false
}

// labelsMatch reports whether ls are the name, value pairs.
func labelsMatch(ls []abi.Label, pairs []string) bool {
	if len(pairs) != 2*len(ls) {
		return false
	}
	for i, l := range ls {
		if pairs[2*i] != l.Name || pairs[2*i+1] != l.Value {
			return false
		}
	}
	return true
}
