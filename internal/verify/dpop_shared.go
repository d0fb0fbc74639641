package verify

// ReplayID is what identifies the proof for a replay check shared across instances: its jti,
// and the unix second after which its iat is outside the accepted window. The jti stays
// unexported otherwise, so that nothing logs it by accident.
func (p Proof) ReplayID() (jti string, until int64) { return p.jti, p.until }
