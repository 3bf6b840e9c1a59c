package main

import "math/rand/v2"

// Order of the contenders within a round.
//
// A fixed rotation (contender (k+round) mod n) makes every contender follow
// the same one in every round, so whatever one contender leaves behind (a
// warm or cold server cache, a GC debt, a busy socket buffer, CPU frequency)
// always falls on the same neighbour. The suite instead uses a balanced
// Latin square (a Williams design): over each block of n rounds (2n when n
// is odd) every contender runs in every position once and immediately
// follows every other contender exactly once (twice for odd n). Which
// contender plays which part of the square is drawn afresh for every block
// from the run's seed, so runs with different seeds see different
// sequences, and -seed reproduces one.

// williams returns the rows of a balanced Latin square of order n: n rows
// for even n, 2n for odd n (the square and its mirror image).
func williams(n int) [][]int {
	if n <= 0 {
		return nil
	}
	first := make([]int, n)
	// 0, 1, n-1, 2, n-2, ...
	lo, hi := 1, n-1
	for i := 1; i < n; i++ {
		if i%2 == 1 {
			first[i] = lo
			lo++
		} else {
			first[i] = hi
			hi--
		}
	}
	var rows [][]int
	for k := 0; k < n; k++ {
		row := make([]int, n)
		for i, v := range first {
			row[i] = (v + k) % n
		}
		rows = append(rows, row)
	}
	if n%2 == 1 {
		for k := 0; k < n; k++ {
			row := make([]int, n)
			for i := range row {
				row[i] = rows[k][n-1-i]
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// orderPlan hands out the contender order of every round of one row.
type orderPlan struct {
	rows  [][]int
	rng   *rand.Rand
	perm  []int // symbol of the square -> contender index, for the current block
	rowOf []int // order of the square's rows within the current block
	block int   // block the permutations were drawn for; -1 before the first
}

// newOrderPlan plans the rounds of a row of n contenders. seed and salt
// (the row's position in the run) determine every order.
func newOrderPlan(n int, seed uint64, salt uint64) *orderPlan {
	return &orderPlan{rows: williams(n), rng: rand.New(rand.NewPCG(seed, salt)), block: -1}
}

// order returns the contender indexes of round k (0-based, counting only
// rounds that were kept: a round measured again gets the same order).
func (p *orderPlan) order(k int) []int {
	if len(p.rows) == 0 {
		return nil
	}
	b := k / len(p.rows)
	for p.block < b {
		p.perm = p.rng.Perm(len(p.rows[0]))
		p.rowOf = p.rng.Perm(len(p.rows))
		p.block++
	}
	sq := p.rows[p.rowOf[k%len(p.rows)]]
	out := make([]int, len(sq))
	for i, sym := range sq {
		out[i] = p.perm[sym]
	}
	return out
}

// blockLen is the number of rounds after which the order is balanced.
func (p *orderPlan) blockLen() int { return len(p.rows) }

// followCounts returns, for rounds 0..rounds-1, how often contender j ran
// right after contender i within a round.
func followCounts(n int, orders [][]int) [][]int {
	m := make([][]int, n)
	for i := range m {
		m[i] = make([]int, n)
	}
	for _, o := range orders {
		for i := 1; i < len(o); i++ {
			m[o[i-1]][o[i]]++
		}
	}
	return m
}

// followRange is the smallest and largest number of times one contender
// ran right after another, over all ordered pairs of different contenders.
func followRange(m [][]int) (lo, hi int) {
	lo, hi = -1, 0
	for i := range m {
		for j := range m[i] {
			if i == j {
				continue
			}
			if lo < 0 || m[i][j] < lo {
				lo = m[i][j]
			}
			hi = max(hi, m[i][j])
		}
	}
	return max(lo, 0), hi
}
