package host

// ReadHoldsBuffer tells the external tests whether an idle filtered
// direction holds its chunk buffer (the portable read: Windows, or the
// portableread tag).
const ReadHoldsBuffer = readHoldsBuffer
