package wasm

import (
	"encoding/binary"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero/api"

	"github.com/tunnelwasm/tunnel/sdk/abi"
)

// This file holds the plugin-wide objects of ABI v2: the shared state and
// the metrics. They belong to the plugin (package host/plugin keeps them
// beside its pool), not to an instance, so they outlive instance failures;
// each instance reaches them through Options.Shared.

// Shared is what every instance of one plugin shares. A nil *Shared in
// Options makes the state and metric functions return StatusNotAllowed.
type Shared struct {
	State   *State
	Metrics *Metrics
}

// State is a plugin's key-value store (state_*): a map under a mutex,
// bounded in value size and total bytes of keys and values.
type State struct {
	maxValue, maxTotal int

	mu    sync.Mutex
	m     map[string][]byte
	total int
}

// NewState returns an empty store with the given bounds (bytes of one
// value, bytes of all keys and values).
func NewState(maxValue, maxTotal int) *State {
	return &State{maxValue: maxValue, maxTotal: maxTotal, m: map[string][]byte{}}
}

// Len returns the number of keys and the bytes of keys and values.
func (s *State) Len() (keys, bytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m), s.total
}

// Get returns a copy of the value of key.
func (s *State) Get(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	return slices.Clone(v), ok
}

func validStateKey(key []byte) bool { return len(key) >= 1 && len(key) <= abi.MaxStateKeyLen }

// putLocked sets key to value (empty: deletes it) when the bounds allow,
// reusing the old value's memory when it is large enough.
func (s *State) putLocked(key, value []byte) int32 {
	old, ok := s.m[string(key)]
	if len(value) == 0 {
		if ok {
			s.total -= len(key) + len(old)
			delete(s.m, string(key))
		}
		return abi.StatusOK
	}
	total := s.total + len(value)
	if ok {
		total -= len(old)
	} else {
		total += len(key)
	}
	if len(value) > s.maxValue || total > s.maxTotal {
		return abi.StatusTooLarge
	}
	s.total = total
	if ok && cap(old) >= len(value) && cap(old) <= 2*len(value) {
		s.m[string(key)] = append(old[:0], value...)
		return abi.StatusOK
	}
	s.m[string(key)] = slices.Clone(value)
	return abi.StatusOK
}

// Metrics is a plugin's metrics (metric_*). Series are defined under a
// mutex and updated with atomics, through an id that indexes a
// copy-on-write slice: an update takes no lock and allocates nothing.
type Metrics struct {
	mu     sync.Mutex
	series atomic.Pointer[[]*Series]
	byKey  map[string]int32 // name + "\x00" + labels as passed
}

// NewMetrics returns an empty set of metrics.
func NewMetrics() *Metrics { return &Metrics{byKey: map[string]int32{}} }

// Series is one metric series: a name, label values and a value.
type Series struct {
	Kind   int32 // abi.MetricCounter, abi.MetricGauge or abi.MetricHistogram
	Name   string
	Labels []abi.Label
	Bounds []float64 // histograms: the buckets' upper bounds

	value   atomic.Int64 // counter, gauge
	count   atomic.Uint64
	sumBits atomic.Uint64
	buckets []atomic.Uint64 // per bound, not cumulative
}

// Value is a snapshot of a series' value.
type Value struct {
	// Value is a counter's or gauge's value.
	Value int64
	// Count and Sum are a histogram's number and sum of observations;
	// Buckets counts those at or below each bound, cumulatively.
	Count   uint64
	Sum     float64
	Buckets []uint64
}

// Load returns the series' current value.
func (s *Series) Load() Value {
	if s.Kind != abi.MetricHistogram {
		return Value{Value: s.value.Load()}
	}
	v := Value{Buckets: make([]uint64, len(s.buckets))}
	var cum uint64
	for i := range s.buckets {
		cum += s.buckets[i].Load()
		v.Buckets[i] = cum
	}
	// Read the count after the buckets so that no bucket exceeds it.
	v.Count = max(s.count.Load(), cum)
	v.Sum = math.Float64frombits(s.sumBits.Load())
	return v
}

// Series returns the defined series, in the order of definition.
func (m *Metrics) Series() []*Series {
	if p := m.series.Load(); p != nil {
		return *p
	}
	return nil
}

func (m *Metrics) get(id int32) *Series {
	p := m.series.Load()
	if p == nil || id < 0 || int(id) >= len(*p) {
		return nil
	}
	return (*p)[id]
}

// define implements metric_define.
func (m *Metrics) define(kind int32, name, labels []byte, bounds []float64) int32 {
	if kind < abi.MetricCounter || kind > abi.MetricHistogram || !abi.ValidMetricName(name, abi.MaxMetricNameLen) {
		return abi.StatusBadArgument
	}
	if kind != abi.MetricHistogram && len(bounds) > 0 {
		return abi.StatusBadArgument
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var kb strings.Builder
	kb.Grow(len(name) + 1 + len(labels))
	kb.Write(name)
	kb.WriteByte(0)
	kb.Write(labels)
	key := kb.String()
	if id, ok := m.byKey[key]; ok {
		s := m.get(id)
		if s.Kind != kind || !slices.Equal(s.Bounds, bounds) {
			return abi.StatusAlreadySet
		}
		return id
	}
	ls, st := abi.ParseLabels(labels)
	if st != abi.StatusOK {
		return st
	}
	if kind == abi.MetricHistogram {
		if st := abi.CheckBounds(bounds); st != abi.StatusOK {
			return st
		}
	}
	cur := m.Series()
	for _, s := range cur {
		if s.Name == string(name) && (s.Kind != kind || !slices.Equal(s.Bounds, bounds) ||
			!slices.EqualFunc(s.Labels, ls, func(a, b abi.Label) bool { return a.Name == b.Name })) {
			return abi.StatusAlreadySet
		}
	}
	if len(cur) >= abi.MaxMetrics {
		return abi.StatusTooLarge
	}
	s := &Series{Kind: kind, Name: string(name), Labels: ls, Bounds: slices.Clone(bounds)}
	if kind == abi.MetricHistogram {
		s.buckets = make([]atomic.Uint64, len(bounds))
	}
	next := append(slices.Clip(cur), s)
	m.series.Store(&next)
	id := int32(len(next) - 1)
	m.byKey[key] = id
	return id
}

// The host functions.

var stateSignatures = map[string]signature{
	abi.ImportStateGet:      {[]api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}},
	abi.ImportStateSet:      {[]api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}},
	abi.ImportStateDelete:   {[]api.ValueType{i32, i32}, []api.ValueType{i32}},
	abi.ImportStateCAS:      {[]api.ValueType{i32, i32, i32, i32, i32, i32}, []api.ValueType{i32}},
	abi.ImportStateAdd:      {[]api.ValueType{i32, i32, i64, i32}, []api.ValueType{i32}},
	abi.ImportMetricDefine:  {[]api.ValueType{i32, i32, i32, i32, i32, i32, i32}, []api.ValueType{i32}},
	abi.ImportMetricAdd:     {[]api.ValueType{i32, i64}, []api.ValueType{i32}},
	abi.ImportMetricSet:     {[]api.ValueType{i32, i64}, []api.ValueType{i32}},
	abi.ImportMetricObserve: {[]api.ValueType{i32, api.ValueTypeF64}, []api.ValueType{i32}},
}

var stateFuncs = map[string]func(in *Instance, stack []uint64){
	abi.ImportStateGet:      hostStateGet,
	abi.ImportStateSet:      hostStateSet,
	abi.ImportStateDelete:   hostStateDelete,
	abi.ImportStateCAS:      hostStateCAS,
	abi.ImportStateAdd:      hostStateAdd,
	abi.ImportMetricDefine:  hostMetricDefine,
	abi.ImportMetricAdd:     hostMetricAdd,
	abi.ImportMetricSet:     hostMetricSet,
	abi.ImportMetricObserve: hostMetricObserve,
}

func init() {
	for name, fn := range stateFuncs {
		hostFuncs[name] = fn
		hostSignatures[name] = stateSignatures[name]
		v2Imports[name] = true
	}
}

// state returns the plugin's store, or nil when the instance has none.
func (in *Instance) state() *State {
	if in.shared == nil {
		return nil
	}
	return in.shared.State
}

func (in *Instance) metrics() *Metrics {
	if in.shared == nil {
		return nil
	}
	return in.shared.Metrics
}

// stateKey reads the key of a state function: the store and the key, or
// the status to return (no store, an invalid key).
func (in *Instance) stateKey(fn string, stack []uint64) (*State, []byte, int32) {
	k := in.read(fn, uint32(stack[0]), uint32(stack[1]))
	s := in.state()
	switch {
	case s == nil:
		return nil, nil, abi.StatusNotAllowed
	case !validStateKey(k):
		return nil, nil, abi.StatusBadArgument
	}
	return s, k, abi.StatusOK
}

func hostStateGet(in *Instance, stack []uint64) {
	buf, limit := uint32(stack[2]), uint32(stack[3])
	s, k, st := in.stateKey(abi.ImportStateGet, stack)
	if st != abi.StatusOK {
		stack[0] = status(st)
		return
	}
	s.mu.Lock()
	v, ok := s.m[string(k)]
	n := uint32(len(v))
	wrote := !ok || n == 0 || n > limit || in.mem.Write(buf, v)
	s.mu.Unlock()
	switch {
	case !ok:
		stack[0] = status(abi.StatusNotFound)
	case !wrote:
		in.fail("%s: range [%d, %d) is outside the guest's memory", abi.ImportStateGet, buf, uint64(buf)+uint64(n))
	default:
		stack[0] = uint64(n)
	}
}

func hostStateSet(in *Instance, stack []uint64) {
	v := in.read(abi.ImportStateSet, uint32(stack[2]), uint32(stack[3]))
	s, k, st := in.stateKey(abi.ImportStateSet, stack)
	if st == abi.StatusOK {
		s.mu.Lock()
		st = s.putLocked(k, v)
		s.mu.Unlock()
	}
	stack[0] = status(st)
}

func hostStateDelete(in *Instance, stack []uint64) {
	s, k, st := in.stateKey(abi.ImportStateDelete, stack)
	if st == abi.StatusOK {
		s.mu.Lock()
		if _, ok := s.m[string(k)]; ok {
			s.putLocked(k, nil)
		} else {
			st = abi.StatusNotFound
		}
		s.mu.Unlock()
	}
	stack[0] = status(st)
}

func hostStateCAS(in *Instance, stack []uint64) {
	old := in.read(abi.ImportStateCAS, uint32(stack[2]), uint32(stack[3]))
	nv := in.read(abi.ImportStateCAS, uint32(stack[4]), uint32(stack[5]))
	s, k, st := in.stateKey(abi.ImportStateCAS, stack)
	if st != abi.StatusOK {
		stack[0] = status(st)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.m[string(k)]; string(cur) != string(old) {
		stack[0] = 0
		return
	}
	if st := s.putLocked(k, nv); st != abi.StatusOK {
		stack[0] = status(st)
		return
	}
	stack[0] = 1
}

func hostStateAdd(in *Instance, stack []uint64) {
	delta, out := int64(stack[2]), uint32(stack[3])
	s, k, st := in.stateKey(abi.ImportStateAdd, stack)
	if st != abi.StatusOK {
		stack[0] = status(st)
		return
	}
	// The sum's place is checked before the store changes: a trapped call
	// changes nothing, so a guest that retries does not count twice.
	if _, ok := in.mem.Read(out, 8); !ok { // not Size(): it wraps to 0 at 4 GiB
		in.fail("%s: range [%d, %d) is outside the guest's memory", abi.ImportStateAdd, out, uint64(out)+8)
	}
	s.mu.Lock()
	cur, ok := s.m[string(k)]
	var sum uint64
	switch {
	case ok && len(cur) != 8:
		s.mu.Unlock()
		stack[0] = status(abi.StatusBadArgument)
		return
	case ok:
		sum = binary.LittleEndian.Uint64(cur) + uint64(delta)
		binary.LittleEndian.PutUint64(cur, sum) // in place: no allocation
	default:
		var b [8]byte
		sum = uint64(delta)
		binary.LittleEndian.PutUint64(b[:], sum)
		if st := s.putLocked(k, b[:]); st != abi.StatusOK {
			s.mu.Unlock()
			stack[0] = status(st)
			return
		}
	}
	s.mu.Unlock()
	in.mem.WriteUint64Le(out, sum) // inside memory: checked above
	stack[0] = status(abi.StatusOK)
}

func hostMetricDefine(in *Instance, stack []uint64) {
	kind := int32(stack[0])
	name := in.read(abi.ImportMetricDefine, uint32(stack[1]), uint32(stack[2]))
	labels := in.read(abi.ImportMetricDefine, uint32(stack[3]), uint32(stack[4]))
	bptr, bcount := uint32(stack[5]), uint32(stack[6])
	m := in.metrics()
	if m == nil {
		stack[0] = status(abi.StatusNotAllowed)
		return
	}
	if bcount > abi.MaxHistogramBuckets {
		stack[0] = status(abi.StatusTooLarge)
		return
	}
	var bounds []float64
	if bcount > 0 {
		raw := in.read(abi.ImportMetricDefine, bptr, bcount*8)
		bounds = make([]float64, bcount)
		for i := range bounds {
			bounds[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
		}
	}
	stack[0] = status(m.define(kind, name, labels, bounds))
}

// series returns the series id of one of kinds, or nil.
func (in *Instance) series(id int32, kinds ...int32) *Series {
	m := in.metrics()
	if m == nil {
		return nil
	}
	s := m.get(id)
	if s == nil {
		return nil
	}
	for _, k := range kinds {
		if s.Kind == k {
			return s
		}
	}
	return nil
}

func hostMetricAdd(in *Instance, stack []uint64) {
	id, delta := int32(stack[0]), int64(stack[1])
	s := in.series(id, abi.MetricCounter, abi.MetricGauge)
	if s == nil || s.Kind == abi.MetricCounter && delta < 0 {
		stack[0] = status(abi.StatusBadArgument)
		return
	}
	s.value.Add(delta)
	stack[0] = status(abi.StatusOK)
}

func hostMetricSet(in *Instance, stack []uint64) {
	id, v := int32(stack[0]), int64(stack[1])
	s := in.series(id, abi.MetricGauge)
	if s == nil {
		stack[0] = status(abi.StatusBadArgument)
		return
	}
	s.value.Store(v)
	stack[0] = status(abi.StatusOK)
}

func hostMetricObserve(in *Instance, stack []uint64) {
	id, v := int32(stack[0]), math.Float64frombits(stack[1])
	s := in.series(id, abi.MetricHistogram)
	if s == nil || !abi.ValidObservation(v) {
		stack[0] = status(abi.StatusBadArgument)
		return
	}
	// The bucket first, then the count: a reader that loads the count
	// last never sees more in the buckets than in the count.
	if i, _ := slices.BinarySearch(s.Bounds, v); i < len(s.buckets) {
		s.buckets[i].Add(1)
	}
	s.count.Add(1)
	for {
		old := s.sumBits.Load()
		if s.sumBits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			break
		}
	}
	stack[0] = status(abi.StatusOK)
}
