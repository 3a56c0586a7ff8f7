// Package config loads medic.yaml strictly: unknown keys, wrong types and
// invalid values are errors carrying file:line:col and the field path.
package config

// Config is the whole medic.yaml. Field docs are the reference: the README's
// config section and the generated JSON Schema are built from them.
type Config struct {
	// This agent's member name, unique in a database cluster. Default: the host name.
	Name string `yaml:"name" json:"name,omitempty"`
	// Directory for the embedded store (audit log) and instance logs. Default ./.medic.
	DataDir string `yaml:"data_dir" json:"data_dir,omitempty"`
	// The HTTP API.
	API API `yaml:"api" json:"api,omitempty"`
	// Supervised services by name. Names: [a-z0-9][a-z0-9_-]*.
	Services map[string]*Service `yaml:"services" json:"services,omitempty"`
	// Signals turned into conditions: thresholds held for a duration, trends, anomalies. With a
	// database backup section, medic adds backup_archive_lagging and backup_archive_failing unless
	// a condition of that name or on that signal is written here (see docs/backup.md).
	Conditions map[string]*Condition `yaml:"conditions" json:"conditions,omitempty"`
	// Remediation runbooks by name.
	Runbooks map[string]*Runbook `yaml:"runbooks" json:"runbooks,omitempty"`
	// Guardrails and trust that apply to all automation.
	Automation Automation `yaml:"automation" json:"automation,omitempty"`
	// Notification receivers by name.
	Receivers map[string]*Receiver `yaml:"receivers" json:"receivers,omitempty"`
	// The etcd cluster that holds database leader leases (never a home-made election).
	Etcd *Etcd `yaml:"etcd" json:"etcd,omitempty"`
	// Membership in a fleet of medic agents on many hosts, through etcd (docs/fleet.md). Default: none.
	Fleet *Fleet `yaml:"fleet" json:"fleet,omitempty"`
	// Managed PostgreSQL clusters by name.
	Databases map[string]*Database `yaml:"databases" json:"databases,omitempty"`
	// Drill schedules and custom scenarios.
	Drills *DrillsConfig `yaml:"drills" json:"drills,omitempty"`

	// File the config was loaded from ("" when built in code). Not part of YAML.
	Path string `yaml:"-" json:"-"`

	// Where each field was written (nil when built in code): positions for
	// Validate and Lint. Set by Parse.
	src *source
}

// API is the agent's HTTP listener.
type API struct {
	// Listen address; must be loopback unless tokens_file is set. Default 127.0.0.1:7070.
	Listen string `yaml:"listen" json:"listen,omitempty"`
	// File of hashed bearer tokens (see `medic token add`). Relative to the config file.
	// Without it, reads are open and mutations are refused (except on the admin socket, to root and the agent's user).
	TokensFile string `yaml:"tokens_file" json:"tokens_file,omitempty"`
	// Connection caps and timeouts of the API and dashboard listener (docs/security.md).
	Limits Limits `yaml:"limits" json:"limits,omitempty"`
	// File descriptors medic keeps for its own work (probes, restarts, audit); client
	// connections on every listener are refused before they would take them. medic raises
	// its soft RLIMIT_NOFILE to the hard limit at start. Default min(1024, limit/4).
	FDReserve int `yaml:"fd_reserve" json:"fd_reserve,omitempty" jsonschema:"minimum=0"`
	// Admin socket: the API also served on this unix socket, outside the TCP listener's caps.
	// root and the agent's user need no token on it; others the mode lets in need one.
	// Relative to the config file. Default <data_dir>/medic.sock; "none" turns it off.
	Socket string `yaml:"socket" json:"socket,omitempty"`
	// Mode of the admin socket, octal: "0600" (the agent's user and root) or "0660" (its group too). Default "0600".
	SocketMode string `yaml:"socket_mode" json:"socket_mode,omitempty" jsonschema:"enum=0600,enum=0660"`
}

// Service is one supervised program run as N instances.
type Service struct {
	// Program and arguments. ${PORT}, ${INSTANCE} and ${SERVICE} are expanded, as are ${VAR} from env.
	Command []string `yaml:"command" json:"command" jsonschema:"minItems=1"`
	// Extra environment. PORT, MEDIC_INSTANCE and MEDIC_SERVICE are always set.
	Env map[string]string `yaml:"env" json:"env,omitempty"`
	// Working directory, relative to the config file. Default: the config file's directory.
	Dir string `yaml:"dir" json:"dir,omitempty"`
	// Number of instances. Default 1.
	Instances int `yaml:"instances" json:"instances,omitempty" jsonschema:"minimum=1,maximum=1000"`
	// Base port: instance i gets port+i, exported as PORT. 0 = no port.
	Port int `yaml:"port" json:"port,omitempty" jsonschema:"minimum=0,maximum=65535"`
	// Restart policy and backoff.
	Restart Restart `yaml:"restart" json:"restart,omitempty"`
	// How instances are stopped.
	Stop Stop `yaml:"stop" json:"stop,omitempty"`
	// Health probes with Kubernetes semantics.
	Probes Probes `yaml:"probes" json:"probes,omitempty"`
	// Services that must be ready before this one starts.
	DependsOn []string `yaml:"depends_on" json:"depends_on,omitempty"`
	// Disruption budget: voluntary restarts never leave fewer ready instances. Default instances-1 (0 for one instance).
	MinAvailable *int `yaml:"min_available" json:"min_available,omitempty" jsonschema:"minimum=0"`
	// Version label of this spec, recorded with its release (medic releases). Default: r<N>, N the release's sequence number.
	Version string `yaml:"version" json:"version,omitempty" jsonschema:"maxLength=64"`
	// How many releases of the service the history keeps (medic releases, medic rollback --to). Default 10.
	ReleaseHistory int `yaml:"release_history" json:"release_history,omitempty" jsonschema:"minimum=0,maximum=1000"`
	// How a new release rolls out: rolling (default) or canary, and the canary's steps and verdict.
	Deploy *Deploy `yaml:"deploy" json:"deploy,omitempty"`
	// sd_notify readiness and watchdog.
	Notify *Notify `yaml:"notify" json:"notify,omitempty"`
	// Per-instance stdout/stderr log files.
	Logs Logs `yaml:"logs" json:"logs,omitempty"`
	// Per-instance resource limits, applied through the instance's cgroup (docs/config.md,
	// "Resource limits"). medic refuses to start (or to reload) a config that sets them on a host
	// where the memory and pids controllers cannot be used, and says why.
	Limits *ResourceLimits `yaml:"limits" json:"limits,omitempty"`
	// Health-aware proxy in front of the instances.
	Proxy *Proxy `yaml:"proxy" json:"proxy,omitempty"`
	// Outbound dependencies by name ([a-z0-9][a-z0-9_-]*): medic listens for each and bounds every
	// call the instances make through it (docs/dependencies.md).
	Dependencies map[string]*Dependency `yaml:"dependencies" json:"dependencies,omitempty"`
	// Feature flags by name ([a-z0-9][a-z0-9_-]*) and their value at start. Each instance gets
	// FLAG_<NAME>=true|false; the live values are at GET /v1/flags/SERVICE, and runbooks flip
	// them with the set_flag action (audited).
	Flags map[string]bool `yaml:"flags" json:"flags,omitempty"`
	// Drills may target this service only when allowed.
	Drills Drills `yaml:"drills" json:"drills,omitempty"`
	// Prometheus endpoint of each instance, scraped for the metric families that conditions use.
	Metrics *Metrics `yaml:"metrics" json:"metrics,omitempty"`
	// Recovery objectives (RTO, RPO) the scorecard holds the drills to.
	Objectives *Objectives `yaml:"objectives" json:"objectives,omitempty"`
	// What automation may do to this service (protection, scaling bounds).
	Remedy *ServiceRemedy `yaml:"remedy" json:"remedy,omitempty"`
	// Fleet-wide placement: how many instances run across the hosts of the fleet and where
	// (docs/fleet.md, Placement). Needs the top-level fleet section. This host runs the share
	// the placement in etcd gives it, starting with instances until it has read it. Default:
	// none (this host runs instances, alone).
	Fleet *ServiceFleet `yaml:"fleet" json:"fleet,omitempty"`
}

// Restart says when and how fast a stopped instance is started again.
type Restart struct {
	// always | on-failure | never. Default always.
	Policy string `yaml:"policy" json:"policy,omitempty" jsonschema:"enum=always,enum=on-failure,enum=never"`
	// Delay before the second restart in a row (the first is immediate). Default 1s.
	Initial Duration `yaml:"initial" json:"initial,omitempty"`
	// Factor applied to the delay after each further crash. Default 2.
	Multiplier float64 `yaml:"multiplier" json:"multiplier,omitempty" jsonschema:"minimum=1"`
	// Upper bound of the delay. Default 5m (Kubernetes' CrashLoopBackOff cap).
	Max Duration `yaml:"max" json:"max,omitempty"`
	// Random spread added to each delay, as a fraction. Default 0.2.
	Jitter *float64 `yaml:"jitter" json:"jitter,omitempty" jsonschema:"minimum=0,maximum=1"`
	// An instance that ran this long is stable: its backoff resets. Default 10m (as Kubernetes).
	ResetAfter Duration `yaml:"reset_after" json:"reset_after,omitempty"`
	// Crash loop: this many restarts within window. Defaults 5 within 1m (systemd's StartLimitBurst=5).
	CrashLoop CrashLoop `yaml:"crash_loop" json:"crash_loop,omitempty"`
}

// CrashLoop marks an instance `crashloop` after Restarts restarts within Window.
type CrashLoop struct {
	// Restarts within window that make a crash loop. Default 5.
	Restarts int `yaml:"restarts" json:"restarts,omitempty" jsonschema:"minimum=1"`
	// The sliding window the restarts are counted in. Default 1m.
	Window Duration `yaml:"window" json:"window,omitempty"`
}

// Stop says how an instance is stopped: Signal to the process group, then SIGKILL after Grace.
type Stop struct {
	// TERM, INT, QUIT, HUP, USR1, USR2 or KILL. Default TERM.
	Signal string `yaml:"signal" json:"signal,omitempty" jsonschema:"enum=TERM,enum=INT,enum=QUIT,enum=HUP,enum=USR1,enum=USR2,enum=KILL"`
	// Time between the signal and SIGKILL of the group (the drain counts in it). Default 10s. A
	// fleet host that stands down (cut from etcd and its peers) cuts it to the time left before
	// the others may start its share (docs/fleet.md).
	Grace Duration `yaml:"grace" json:"grace,omitempty"`
}

// Probes are the three Kubernetes probe roles.
type Probes struct {
	// Gates the other two until it succeeds once; failure_threshold failures restart the instance.
	Startup *Probe `yaml:"startup" json:"startup,omitempty"`
	// failure_threshold consecutive failures restart the instance (through backoff).
	Liveness *Probe `yaml:"liveness" json:"liveness,omitempty"`
	// Failure marks the instance not ready (out of traffic) without a restart.
	Readiness *Probe `yaml:"readiness" json:"readiness,omitempty"`
}

// Probe is one check and its schedule. Exactly one of http, tcp, exec, grpc is set.
type Probe struct {
	// An HTTP GET.
	HTTP *HTTPProbe `yaml:"http" json:"http,omitempty"`
	// A TCP connect.
	TCP *TCPProbe `yaml:"tcp" json:"tcp,omitempty"`
	// A command run in the service's directory and environment.
	Exec *ExecProbe `yaml:"exec" json:"exec,omitempty"`
	// A grpc.health.v1 Check call.
	GRPC *GRPCProbe `yaml:"grpc" json:"grpc,omitempty"`
	// Wait after the process starts before the first probe. Default 0.
	InitialDelay Duration `yaml:"initial_delay" json:"initial_delay,omitempty"`
	// Time between probes. Default 10s, minimum 100ms.
	Period Duration `yaml:"period" json:"period,omitempty"`
	// A probe slower than this fails and is cut. Default 1s, or the period when that is shorter; must not exceed period.
	Timeout Duration `yaml:"timeout" json:"timeout,omitempty"`
	// Consecutive successes to count as passing. Default 1; must be 1 for liveness and startup.
	SuccessThreshold int `yaml:"success_threshold" json:"success_threshold,omitempty" jsonschema:"minimum=1"`
	// Consecutive failures to count as failing. Default 3.
	FailureThreshold int `yaml:"failure_threshold" json:"failure_threshold,omitempty" jsonschema:"minimum=1"`
}

// HTTPProbe passes when a GET answers with a status in range (and the body holds Body).
type HTTPProbe struct {
	// Request path, starting with /. Default /.
	Path string `yaml:"path" json:"path,omitempty"`
	// Port to probe. Default: the instance's port.
	Port int `yaml:"port" json:"port,omitempty" jsonschema:"minimum=0,maximum=65535"`
	// Host to connect to. Default 127.0.0.1.
	Host string `yaml:"host" json:"host,omitempty"`
	// http (default) or https (certificates are not verified).
	Scheme string `yaml:"scheme" json:"scheme,omitempty" jsonschema:"enum=http,enum=https"`
	// Extra request headers; Host sets the Host header.
	Headers map[string]string `yaml:"headers" json:"headers,omitempty"`
	// Accepted status range "LO-HI" (or one code), within 100-599. Default 200-399 (Kubernetes).
	Status string `yaml:"status" json:"status,omitempty" jsonschema:"pattern=^[1-5][0-9][0-9](-[1-5][0-9][0-9])?$"`
	// Optional substring the body must contain (first 64 KiB).
	Body string `yaml:"body" json:"body,omitempty"`
}

// TCPProbe passes when a connection is accepted.
type TCPProbe struct {
	// Port to connect to. Default: the instance's port.
	Port int `yaml:"port" json:"port,omitempty" jsonschema:"minimum=0,maximum=65535"`
	// Host to connect to. Default 127.0.0.1.
	Host string `yaml:"host" json:"host,omitempty"`
}

// ExecProbe passes when the command exits 0. It runs in its own process group, killed at the timeout.
type ExecProbe struct {
	// Program and arguments, run in the service's directory with its environment.
	Command []string `yaml:"command" json:"command" jsonschema:"minItems=1"`
}

// GRPCProbe uses the standard grpc.health.v1 protocol.
type GRPCProbe struct {
	// Port to call. Default: the instance's port.
	Port int `yaml:"port" json:"port,omitempty" jsonschema:"minimum=0,maximum=65535"`
	// Host to call. Default 127.0.0.1.
	Host string `yaml:"host" json:"host,omitempty"`
	// Service name sent in the HealthCheckRequest; "" asks about the whole server.
	Service string `yaml:"service" json:"service,omitempty"`
}

// Notify enables the sd_notify protocol: NOTIFY_SOCKET is set for the instance.
type Notify struct {
	// READY=1 marks the instance started and ready (with a readiness probe, both must pass).
	Ready bool `yaml:"ready" json:"ready,omitempty"`
	// If set, WATCHDOG=1 must arrive at least this often; a miss is a liveness failure. WATCHDOG_USEC is exported.
	Watchdog Duration `yaml:"watchdog" json:"watchdog,omitempty"`
}

// Logs configures size-rotated per-instance log files under data_dir/logs.
type Logs struct {
	// Rotate when a file reaches this size. Default 10MiB.
	MaxSize ByteSize `yaml:"max_size" json:"max_size,omitempty"`
	// Rotated files kept. Default 3.
	MaxFiles int `yaml:"max_files" json:"max_files,omitempty" jsonschema:"minimum=0"`
	// File mode of the instance's log files, in octal. Default "0640": the owner's group may
	// read them (a log shipper), others may not; the API guards them too.
	Mode string `yaml:"mode" json:"mode,omitempty" jsonschema:"pattern=^0?[0-7]{3}$"`
}

// Drills are fault-injection exercises.
type Drills struct {
	// Let `medic drill` inject faults into this service. Default false.
	Allow bool `yaml:"allow" json:"allow,omitempty"`
}
