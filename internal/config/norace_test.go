//go:build !race

package config_test

// slowdown is how much slower code runs under the race detector; time
// bounds in tests are multiplied by it.
const slowdown = 1
