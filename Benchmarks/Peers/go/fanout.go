// fanout for Go: 10,000 goroutines x 10 steps, `yield` (runtime.Gosched) or `timer` (a zero
// time.Timer per step), on one OS thread (GOMAXPROCS=1, like one libuv loop). Prints one JSON
// line per trial: {"ms": <wall ms>, "completed": <goroutines that finished all their steps>}.
// usage: go run fanout.go yield|timer OPS STEPS TRIALS
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) != 5 || (os.Args[1] != "yield" && os.Args[1] != "timer") {
		fmt.Fprintln(os.Stderr, "usage: fanout yield|timer OPS STEPS TRIALS")
		os.Exit(2)
	}
	variant := os.Args[1]
	ops, _ := strconv.Atoi(os.Args[2])
	steps, _ := strconv.Atoi(os.Args[3])
	trials, _ := strconv.Atoi(os.Args[4])
	runtime.GOMAXPROCS(1)
	for t := 0; t < trials; t++ {
		var completed, taken int64
		var wg sync.WaitGroup
		start := time.Now()
		wg.Add(ops)
		for i := 0; i < ops; i++ {
			go func() {
				defer wg.Done()
				for s := 0; s < steps; s++ {
					if variant == "yield" {
						runtime.Gosched()
					} else {
						<-time.NewTimer(0).C
					}
					atomic.AddInt64(&taken, 1)
				}
				atomic.AddInt64(&completed, 1)
			}()
		}
		wg.Wait()
		ms := float64(time.Since(start).Nanoseconds()) / 1e6
		if taken != int64(ops*steps) {
			fmt.Fprintf(os.Stderr, "took %d steps, expected %d\n", taken, ops*steps)
			os.Exit(1)
		}
		fmt.Printf("{\"ms\": %f, \"completed\": %d}\n", ms, completed)
	}
}
