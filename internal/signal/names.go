// Package signal holds medic's observations as time series in memory: a
// bounded Store, and the collectors that feed it, each a Serve(ctx) loop on
// an injected clock.
//
// # Signal names
//
// Names follow Prometheus conventions (base units, _total for counters);
// labels are listed in braces. The instance label is the full instance id
// ("web/0"), so that it names a target on its own.
//
// Produced by Host:
//
//	host_disk_used_percent{path}         used / (used + available) × 100, as df shows it
//	host_disk_free_bytes{path}           bytes available to unprivileged users
//	host_disk_total_bytes{path}
//	host_disk_inodes_used_percent{path}
//	host_memory_used_percent
//	host_memory_available_bytes
//
// Fed by the agent through a Poller from the supervisor and the probes
// (the names are constants here so that producer and conditions agree):
//
//	instance_rss_bytes{service,instance}
//	instance_cpu_seconds_total{service,instance}   user + system, cumulative
//	instance_cpu_cores{service,instance}           CPU seconds per second over the last period (see Rates)
//	instance_open_fds{service,instance}
//	instance_restarts_total{service,instance}
//	instance_ready{service,instance}               1 ready, 0 not
//	service_ready_instances{service}
//	service_desired_instances{service}
//	probe_success{service,instance,probe}          1 pass, 0 fail; probe is startup, liveness or readiness
//	probe_duration_seconds{service,instance,probe}
//
// Fed by the agent from the proxy's statistics:
//
//	proxy_requests_per_second{service}
//	proxy_errors_per_second{service}
//	proxy_error_ratio{service}                     errors / requests over the last period (0 without requests)
//	proxy_inflight{service}
//	proxy_shed_per_second{service}
//	proxy_concurrency_limit{service}
//	proxy_instance_latency_seconds{service,instance}  the proxy's latency estimate per instance
//	proxy_latency_p99_seconds{service}             when the proxy reports quantiles
//	proxy_class_breaker_state{service,class}       a client class's own breaker: 0 closed, 1 half-open, 2 open
//
// Fed by the agent from the dependency listeners (internal/egress):
//
//	dependency_breaker_state{service,dependency}         0 closed, 1 half-open, 2 open
//	dependency_calls_per_second{service,dependency}      every outcome
//	dependency_failures_per_second{service,dependency}   error + timeout (the dependency's fault)
//	dependency_refused_per_second{service,dependency}    open + shed (medic answered at once)
//	dependency_fallbacks_per_second{service,dependency}
//	dependency_latency_p99_seconds{service,dependency}   over the last 1024 calls
//
// Produced by Scraper, for each configured metric family of a service's
// /metrics: the family's own name and labels plus the Scraper's target labels
// (service, instance); an exposed label that clashes with a target label is
// kept as exported_<name>. Summaries give name{quantile}, name_sum and
// name_count; histograms name_bucket{le}, name_sum and name_count. And for
// every scrape:
//
//	scrape_up{service,instance}                1 when the scrape succeeded, 0 when not
//	scrape_duration_seconds{service,instance}
//
// Fed by the agent from each database's backups (internal/backup), every 5s:
//
//	backup_archive_lag_seconds{database}       seconds since WAL last reached the archive while WAL waits (primary only)
//	backup_archive_lag_segments{database}      completed WAL segments not yet archived (primary only)
//	backup_archive_failed_count{database}      failed archive-push attempts (pg_stat_archiver; primary only)
//	backup_last_success_age_seconds{database}  age of the newest backup in the repository
//	backup_failures_total{database}            failed backups on this member since medic started
//	backup_repository_free_bytes{database}     space left on the repository's file system
package signal

// Label names used by the collectors.
const (
	LabelService    = "service"
	LabelDependency = "dependency"
	LabelClass      = "class"
	LabelInstance   = "instance"
	LabelPath       = "path"
	LabelProbe      = "probe"
	LabelDatabase   = "database"
)

// Signal names (see the package comment).
const (
	HostDiskUsedPercent       = "host_disk_used_percent"
	HostDiskFreeBytes         = "host_disk_free_bytes"
	HostDiskTotalBytes        = "host_disk_total_bytes"
	HostDiskInodesUsedPercent = "host_disk_inodes_used_percent"
	HostMemoryUsedPercent     = "host_memory_used_percent"
	HostMemoryAvailableBytes  = "host_memory_available_bytes"

	InstanceRSSBytes        = "instance_rss_bytes"
	InstanceCPUSecondsTotal = "instance_cpu_seconds_total"
	InstanceCPUCores        = "instance_cpu_cores"
	InstanceOpenFDs         = "instance_open_fds"
	InstanceRestartsTotal   = "instance_restarts_total"
	InstanceReady           = "instance_ready"
	ServiceReadyInstances   = "service_ready_instances"
	ServiceDesiredInstances = "service_desired_instances"

	BackupArchiveLagSeconds     = "backup_archive_lag_seconds"
	BackupArchiveLagSegments    = "backup_archive_lag_segments"
	BackupArchiveFailedCount    = "backup_archive_failed_count"
	BackupLastSuccessAgeSeconds = "backup_last_success_age_seconds"
	BackupFailuresTotal         = "backup_failures_total"
	BackupRepositoryFreeBytes   = "backup_repository_free_bytes"
	ProbeSuccess                = "probe_success"
	ProbeDurationSeconds        = "probe_duration_seconds"
	ProxyRequestsPerSecond      = "proxy_requests_per_second"
	ProxyErrorsPerSecond        = "proxy_errors_per_second"
	ProxyErrorRatio             = "proxy_error_ratio"
	ProxyInflight               = "proxy_inflight"
	ProxyShedPerSecond          = "proxy_shed_per_second"
	ProxyConcurrencyLimit       = "proxy_concurrency_limit"
	ProxyInstanceLatency        = "proxy_instance_latency_seconds"
	ProxyLatencyP99Seconds      = "proxy_latency_p99_seconds"
	DependencyBreakerState      = "dependency_breaker_state"
	ProxyClassBreakerState      = "proxy_class_breaker_state"
	DependencyCallsPerSec       = "dependency_calls_per_second"
	DependencyFailuresPerSec    = "dependency_failures_per_second"
	DependencyRefusedPerSec     = "dependency_refused_per_second"
	DependencyFallbacksPerSec   = "dependency_fallbacks_per_second"
	DependencyLatencyP99        = "dependency_latency_p99_seconds"
	ScrapeUp                    = "scrape_up"
	ScrapeDurationSeconds       = "scrape_duration_seconds"
)
