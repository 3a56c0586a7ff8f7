package config

// Condition is a signal turned into pending → firing → resolved.
// (Owned by the detect work; extended there.)
type Condition struct{}
