package config

// DrillsConfig holds custom drill scenarios and schedules. (Owned by the drills work; extended there.)
type DrillsConfig struct{}
