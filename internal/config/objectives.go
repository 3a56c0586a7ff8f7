package config

// Objectives are a service's declared recovery objectives, which the
// resilience scorecard checks against the last drills.
type Objectives struct {
	// Recovery time objective: the longest acceptable time from a fault to serving again.
	RTO Duration `yaml:"rto" json:"rto,omitempty"`
	// Recovery point objective: the most data (as time) that may be lost; 0 = none.
	RPO Duration `yaml:"rpo" json:"rpo,omitempty"`
}

// Validate checks that an RTO is declared.
func (o *Objectives) Validate() []FieldIssue {
	if o.RTO <= 0 {
		return []FieldIssue{{Field: "rto", Message: "must be declared and greater than 0"}}
	}
	return nil
}
