package fleet

import (
	"sync"
	"testing"
)

// The same proof sent to two instances at once, as an attacker racing the client would: the
// two SET NX reach the store together, and exactly one request is served per proof, the
// other refused with invalid_dpop_proof, whichever instance wins.
func TestProofRacedAtTwoInstances(t *testing.T) {
	e := newEnv(t)
	a := e.start(t, opts{onError: "closed"})
	b := e.start(t, opts{onError: "closed"})
	c := e.dpopClient(t)

	const proofs = 40
	for i := range proofs {
		p := c.proof(t)
		var got [2]answer
		var errs [2]error
		var wg sync.WaitGroup
		start := make(chan struct{})
		for j, in := range []*instance{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				got[j], errs[j] = in.do(c.auth(), p)
			}()
		}
		close(start)
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		ok := 0
		for j, g := range got {
			switch {
			case g.code == 200:
				ok++
			case g.code == 401:
				checkDenied(t, "the losing copy", g, 401, "invalid_dpop_proof")
			default:
				t.Errorf("proof %d at instance %d: %d %q", i, j, g.code, g.body)
			}
		}
		if ok != 1 {
			t.Fatalf("proof %d sent to A and B at once: %d served, want exactly 1 (%d, %d)", i, ok, got[0].code, got[1].code)
		}
	}
}
