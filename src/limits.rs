//! The open-files limit: systemd gives a service a soft limit of 1,024 descriptors, fewer than a
//! busy server's connections, while the hard limit allows far more; so the soft limit is raised at
//! start, and the connection cap is checked against what it allows.

/// Descriptors kept for everything but client connections: the listener, the database pool (16
/// PostgreSQL connections, or SQLite's files), logs, the runtime's own.
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// The connection cap when neither the operator nor the open-files limit sets a lower one.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in force.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The soft limit in force (`u64::MAX` where it cannot be read).
pub fn open_files_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(u64::MAX, |(soft, _)| soft)
}

/// The most connections a limit of `open_files` descriptors can hold beside the reserved ones.
pub fn connections_allowed(open_files: u64) -> usize {
    usize::try_from(open_files.saturating_sub(RESERVED_DESCRIPTORS)).unwrap_or(usize::MAX)
}

/// The cap when the operator sets none: the default, or fewer when the limit cannot hold it.
pub fn default_max_connections(open_files: u64) -> usize {
    DEFAULT_MAX_CONNECTIONS.min(connections_allowed(open_files)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        let raised = raise_open_files_limit().expect("the limit can be read and raised");
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        assert_eq!(raised, soft, "the returned limit is the one in force");
        assert_eq!(open_files_limit(), soft);
        assert_eq!(soft, hard, "nothing is left between the soft and the hard limit");
        // Raising again changes nothing.
        assert_eq!(raise_open_files_limit().unwrap(), soft);
    }

    #[test]
    fn the_cap_leaves_room_for_the_database_and_logs() {
        assert_eq!(default_max_connections(1024), 960);
        assert_eq!(default_max_connections(1 << 20), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(default_max_connections(10), 1);
        assert_eq!(connections_allowed(u64::MAX), usize::try_from(u64::MAX - RESERVED_DESCRIPTORS).unwrap());
    }
}
