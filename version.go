package medic

// Version is set at build time with -ldflags "-X github.com/medic-dev/medic.Version=…".
var Version = "dev"
