package verdict_test

import (
	"fmt"
	"time"

	"github.com/medic-dev/medic/internal/verdict"
)

// show prints a verdict the way docs/deploys.md quotes it.
func show(n int, v verdict.Verdict) {
	fmt.Printf("after %d requests per group: %s\n", n, v.Decision)
	for _, m := range v.Metrics {
		fmt.Printf("  %-18s %-8s %s\n", m.Name, m.Decision, m.Reason)
	}
}

// A canary answering 5 % 500s beside a clean baseline, evaluated every 5
// requests: the worked example of docs/deploys.md.
func ExampleEvaluate_badCanary() {
	c, b := newGroup(1, 1), newGroup(1, 2)
	c.errRate = 0.05
	v, n := run(verdict.Config{}, c, b, 5, 1000)
	show(n, v)
	// Output:
	// after 30 requests per group: fail
	//   errors 5xx         fail     4 of 30 (13.33%) vs baseline 0 of 30 (0.00%), log LR 6.51 >= 4.55: 3% errors is 669 times likelier than 0.5% (false-fail bound 0.011)
	//   errors no-response continue 0 of 30 (0.00%) vs baseline 0 of 30 (0.00%), log LR -0.76 between -2.99 and 4.55: at least 88 more clean requests to pass
	//   latency median     continue median 18.75ms vs baseline 19.93ms, shift 70µs (+0.4%, 0.99 one-sided bounds -20.0% to +21.4%), p=0.49: not yet clear of the 10% tolerance, about 95 more requests
	//   latency p99        continue 26 canary and 30 baseline successful requests, below the tail's minimum of 100
}

// The same binary on both sides: continue, then pass.
func ExampleEvaluate_goodCanary() {
	c, b := newGroup(3, 1), newGroup(3, 2)
	var cs, bs verdict.Sample
	cs.Start = t0
	for n := 1; n <= 3000; n++ {
		cs.Outcomes = append(cs.Outcomes, c.next())
		bs.Outcomes = append(bs.Outcomes, b.next())
		if n != 50 && n%25 != 0 {
			continue
		}
		v := verdict.Evaluate(verdict.Config{}, cs, bs, t0.Add(time.Duration(n)*10*time.Millisecond))
		if n == 50 {
			show(n, v)
			fmt.Println(" ", v.Reason)
		}
		if v.Decision != verdict.Continue {
			show(n, v)
			return
		}
	}
	// Output:
	// after 50 requests per group: continue
	//   errors 5xx         continue 0 of 50 (0.00%) vs baseline 0 of 50 (0.00%), log LR -1.27 between -2.99 and 4.55: at least 68 more clean requests to pass
	//   errors no-response continue 0 of 50 (0.00%) vs baseline 0 of 50 (0.00%), log LR -1.27 between -2.99 and 4.55: at least 68 more clean requests to pass
	//   latency median     continue median 20.12ms vs baseline 19.25ms, shift 1.68ms (+8.7%, 0.99 one-sided bounds -6.5% to +22.2%), p=0.0911: not yet clear of the 10% tolerance, about 363 more requests
	//   latency p99        continue 50 canary and 50 baseline successful requests, below the tail's minimum of 100
	//   continue: errors 5xx, errors no-response, latency median, latency p99 undecided, about 363 more requests per group
	// after 225 requests per group: pass
	//   errors 5xx         pass     0 of 225 (0.00%) vs baseline 0 of 225 (0.00%), log LR -5.73 <= -2.99: 0.5% errors is 307 times likelier than 3%: no worse than the baseline
	//   errors no-response pass     0 of 225 (0.00%) vs baseline 0 of 225 (0.00%), log LR -5.73 <= -2.99: 0.5% errors is 307 times likelier than 3%: no worse than the baseline
	//   latency median     pass     median 20.65ms vs baseline 20.01ms, shift 460µs (+2.3%, 0.99 one-sided bounds -4.8% to +9.4%), p=0.221: the upper bound is inside the 10% tolerance
	//   latency p99        pass     p95 32.22ms vs baseline 33.1ms (-2.6%, its 0.99 upper bound 39.66ms, order statistic 222 of 225); 1 of 225 canary requests above 49.57ms in 1 runs where 11.3 are expected, log LR -23.82 <= -2.99: no slower tail (judged at p95: the p99 from 459 baseline requests on)
}

// A canary 20 % slower than its baseline, evaluated every 10 requests.
func ExampleEvaluate_slowCanary() {
	c, b := newGroup(2, 1), newGroup(2, 2)
	c.slow = 1.2
	v, n := run(verdict.Config{}, c, b, 10, 2000)
	show(n, v)
	// Output:
	// after 240 requests per group: fail
	//   errors 5xx         pass     0 of 240 (0.00%) vs baseline 0 of 240 (0.00%), log LR -6.11 <= -2.99: 0.5% errors is 449 times likelier than 3%: no worse than the baseline
	//   errors no-response pass     0 of 240 (0.00%) vs baseline 0 of 240 (0.00%), log LR -6.11 <= -2.99: 0.5% errors is 449 times likelier than 3%: no worse than the baseline
	//   latency median     fail     median 23.89ms vs baseline 20.18ms, shift 3.52ms (+17.4%, 0.99 one-sided bounds +10.5% to +24.5%), p=6.84e-09: slower, p < 0.01, and the lower bound is beyond the 10% tolerance
	//   latency p99        pass     p95 39.08ms vs baseline 33.23ms (+17.6%, its 0.99 upper bound 38.86ms, order statistic 236 of 240); 4 of 240 canary requests above 48.57ms in 4 runs where 12.0 are expected, log LR -21.85 <= -2.99: no slower tail (judged at p95: the p99 from 459 baseline requests on)
}
