package config

// Runbook is a remediation written as data. (Owned by the remedy work; extended there.)
type Runbook struct{}

// Automation holds the global guardrails and trust settings.
type Automation struct{}

// Receiver is a notification target.
type Receiver struct{}

// ServiceRemedy says what automation may do to one service.
type ServiceRemedy struct{}
