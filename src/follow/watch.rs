//! Wake-ups for the follower: inotify through `notify`, or a polling timer.
//!
//! The watcher never carries data. Its events only say "something may have changed";
//! the follower then re-stats every file (device, inode, length) and reads at its own
//! pace, so the file itself is the buffer and a lost or merged wake-up loses nothing.
//!
//! - [`WatchMode::Native`] watches the *directories* holding the followed files (one
//!   inotify watch each, non-recursive), which sees writes, creations, renames and
//!   deletions alike, also of files that do not exist yet. It also re-checks every
//!   [`NATIVE_RECHECK`] in case an event could not be delivered (a directory created
//!   after the start, a watch that could not be placed).
//! - [`WatchMode::Poll`] re-checks on a timer.
//!
//! Native falls back to polling, and says so on stderr with the cause, when inotify
//! cannot be set up (instance or watch limits) or a directory lives on a network file
//! system, where inotify does not see writes made by other machines.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often native mode re-checks without a wake-up, as a safety net.
pub const NATIVE_RECHECK: Duration = Duration::from_secs(1);

/// File system types on which inotify does not report changes made elsewhere.
const NETWORK_FS: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ncpfs",
    "afs",
    "9p",
    "ceph",
    "glusterfs",
    "lustre",
    "gpfs",
    "fuse.sshfs",
    "fuse.s3fs",
    "fuse.rclone",
];

/// How changes are noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// inotify (through `notify`), plus a slow safety re-check.
    Native,
    /// Re-check every interval.
    Poll(Duration),
}

/// The wake-up source of one `hub-tail` run.
pub struct Watch {
    mode: WatchMode,
    /// The interval polling uses, also after a fallback from native mode.
    poll_interval: Duration,
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    rx: mpsc::Receiver<()>,
    tick: tokio::time::Interval,
}

impl Watch {
    /// Starts in `mode`; when native watching cannot start, falls back to polling every
    /// `poll_interval` and says why on stderr.
    pub fn new(mode: WatchMode, poll_interval: Duration) -> Watch {
        // Capacity 1: a pending wake-up already says everything a second one would.
        let (tx, rx) = mpsc::channel(1);
        let mut w = Watch {
            mode,
            poll_interval,
            watcher: None,
            watched: HashSet::new(),
            rx,
            tick: interval(NATIVE_RECHECK),
        };
        match mode {
            WatchMode::Poll(d) => w.tick = interval(d),
            WatchMode::Native => {
                let handler = move |res: notify::Result<notify::Event>| {
                    if let Ok(ev) = &res
                        && matches!(ev.kind, notify::EventKind::Access(_))
                    {
                        // Our own opens and reads: not a change.
                        return;
                    }
                    // The callback runs on notify's thread and cannot await. `Full`
                    // means a wake-up is already pending, so dropping this one is
                    // harmless; `Closed` means hub-tail is shutting down.
                    let _ = tx.try_send(());
                };
                match notify::recommended_watcher(handler) {
                    Ok(watcher) => w.watcher = Some(watcher),
                    Err(e) => w.fall_back(&describe(&e)),
                }
            }
        }
        w
    }

    pub fn mode(&self) -> WatchMode {
        self.mode
    }

    /// Makes sure changes in `dir` wake us up. A directory that does not exist (yet)
    /// is skipped and tried again on the next call; the re-check timer covers it
    /// meanwhile.
    pub fn watch_dir(&mut self, dir: &Path) {
        if self.mode != WatchMode::Native || self.watched.contains(dir) {
            return;
        }
        if let Some(fs) = network_fs(dir) {
            self.fall_back(&format!(
                "{} is on a {fs} file system, where inotify does not see changes made by other hosts",
                dir.display()
            ));
            return;
        }
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        use notify::Watcher as _;
        match watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.watched.insert(dir.to_path_buf());
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => self.fall_back(&format!("watching {}: {}", dir.display(), describe(&e))),
        }
    }

    fn fall_back(&mut self, cause: &str) {
        eprintln!(
            "hub-tail: cannot use inotify ({cause}); polling every {} instead",
            humantime::format_duration(self.poll_interval)
        );
        self.mode = WatchMode::Poll(self.poll_interval);
        self.watcher = None;
        self.watched.clear();
        self.tick = interval(self.poll_interval);
    }

    /// Waits for the next wake-up: a watcher event or the timer.
    ///
    /// # Cancel safety
    /// Cancel safe: a wake-up that is not taken stays pending.
    pub async fn wait(&mut self) {
        tokio::select! {
            _ = self.rx.recv(), if self.watcher.is_some() => {}
            _ = self.tick.tick() => {}
        }
    }
}

fn interval(d: Duration) -> tokio::time::Interval {
    let mut i = tokio::time::interval(d.max(Duration::from_millis(1)));
    i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    i
}

fn is_not_found(e: &notify::Error) -> bool {
    match &e.kind {
        notify::ErrorKind::PathNotFound => true,
        notify::ErrorKind::Io(io) => io.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

/// A notify error as a cause a user can act on.
pub fn describe(e: &notify::Error) -> String {
    match &e.kind {
        notify::ErrorKind::MaxFilesWatch => {
            "the inotify watch limit is reached; raise fs.inotify.max_user_watches".to_string()
        }
        notify::ErrorKind::Io(io) if io.raw_os_error() == Some(24) => format!(
            "{io}: the inotify instance limit is reached; raise fs.inotify.max_user_instances"
        ),
        notify::ErrorKind::Io(io) if io.raw_os_error() == Some(28) => {
            format!("{io}: the inotify watch limit is reached; raise fs.inotify.max_user_watches")
        }
        _ => e.to_string(),
    }
}

/// The type of the network file system holding `path`, if it is on one
/// (from `/proc/self/mountinfo`; `None` when that cannot be read).
pub fn network_fs(path: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mount_fs_type(&info, path).filter(|t| NETWORK_FS.contains(&t.as_str()))
}

/// The file system type of the longest mount point that contains `path`.
fn mount_fs_type(mountinfo: &str, path: &Path) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        let mut fields = line.split(' ');
        let Some(mount_point) = fields.nth(4) else {
            continue;
        };
        let mount_point = mount_point.replace("\\040", " ");
        let Some(fs_type) = line.split(" - ").nth(1).and_then(|r| r.split(' ').next()) else {
            continue;
        };
        if path.starts_with(&mount_point) && best.as_ref().is_none_or(|b| mount_point.len() >= b.0)
        {
            best = Some((mount_point.len(), fs_type.to_string()));
        }
    }
    best.map(|b| b.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_type_by_longest_prefix() {
        let info = "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    40 22 0:35 / /mnt/nfs rw shared:2 - nfs4 srv:/export rw\n\
                    41 22 0:36 / /mnt/my\\040share rw - cifs //srv/s rw\n";
        assert_eq!(
            mount_fs_type(info, Path::new("/var/log")).as_deref(),
            Some("ext4")
        );
        assert_eq!(
            mount_fs_type(info, Path::new("/mnt/nfs/logs")).as_deref(),
            Some("nfs4")
        );
        assert_eq!(
            mount_fs_type(info, Path::new("/mnt/my share/x")).as_deref(),
            Some("cifs")
        );
        // a prefix of a name is not a parent
        assert_eq!(
            mount_fs_type(info, Path::new("/mnt/nfsx")).as_deref(),
            Some("ext4")
        );
    }

    #[test]
    fn causes_name_the_limit() {
        let e = notify::Error::new(notify::ErrorKind::MaxFilesWatch);
        assert!(describe(&e).contains("max_user_watches"));
        let e = notify::Error::io(std::io::Error::from_raw_os_error(24));
        assert!(describe(&e).contains("max_user_instances"));
    }

    #[tokio::test]
    async fn native_wakes_on_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Watch::new(WatchMode::Native, Duration::from_secs(60));
        w.watch_dir(dir.path());
        assert_eq!(w.mode(), WatchMode::Native);
        w.wait().await; // the first timer tick is immediate
        std::fs::write(dir.path().join("a.log"), "x\n").unwrap();
        tokio::time::timeout(Duration::from_millis(900), w.wait())
            .await
            .expect("a write wakes the watcher before the re-check timer");
    }

    #[tokio::test]
    async fn poll_ticks() {
        let mut w = Watch::new(WatchMode::Poll(Duration::from_millis(50)), Duration::ZERO);
        w.watch_dir(Path::new("/"));
        w.wait().await;
        let t = tokio::time::Instant::now();
        w.wait().await;
        assert!(
            t.elapsed() >= Duration::from_millis(45),
            "{:?}",
            t.elapsed()
        );
    }
}
