package testkit

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Every runs fault (a SCRIPT FLUSH, a CLIENT KILL) in a goroutine of its
// own, again and again, waiting lo plus a random 0..spread-1 milliseconds
// before each run (spread 0: exactly lo), until the returned stop is
// called; stop waits for the goroutine to end.
func Every(seed uint64, lo, spread int, fault func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, seed+1))
		for {
			d := lo
			if spread > 0 {
				d += rng.IntN(spread)
			}
			select {
			case <-done:
				return
			case <-time.After(time.Duration(d) * time.Millisecond):
				fault()
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
