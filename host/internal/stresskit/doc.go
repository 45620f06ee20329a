// Package stresskit is what the engine's stress tests share (the event
// loop's in host/internal/evloop, the Proxy's in host): connections whose
// ends meet backpressure at every turn, with tiny socket buffers, bursts
// of writes, reads that stall, and reads held until the other end has
// half-closed. It is for tests only, and Linux only.
package stresskit
