package capture

// PendingTaps counts the connections WireTap tapped whose chain has not
// opened (or whose failed handshake was not yet noticed).
func PendingTaps(w *Writer) int {
	n := 0
	w.taps.Range(func(any, any) bool { n++; return true })
	return n
}
