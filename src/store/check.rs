//! `hub-serve --check`: reads a data dir's log offline and reports what a start
//! would find, changing nothing.

use super::segment::{self, Format};
use super::{StoreError, list_segments};
use std::fs::File;
use std::path::{Path, PathBuf};

/// One segment as the check found it.
#[derive(Debug, Clone)]
pub struct SegmentCheck {
    pub path: PathBuf,
    pub format: Format,
    pub events: u64,
    /// First and last id of its intact records.
    pub ids: Option<(u64, u64)>,
    pub bytes: u64,
    pub damage: Vec<Region>,
    /// A record cut short at the end (offset, bytes): a torn tail in the newest
    /// segment, damage in an older one (then it is in `damage` too).
    pub torn: Option<(u64, u64)>,
}

/// A damaged region of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub offset: u64,
    pub bytes: u64,
    /// The ids it held, or `None` when it held none.
    pub lost: Option<(u64, u64)>,
}

/// What [`check`] found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub segments: Vec<SegmentCheck>,
    /// Ids missing between intact records that no damage found now explains: lost
    /// to damage a start already repaired.
    pub missing: Vec<(u64, u64)>,
    /// Copies of segments kept by earlier repairs (`*.damaged*`).
    pub copies: Vec<PathBuf>,
}

impl CheckReport {
    /// Whether any segment is damaged now (a torn tail of the newest is not damage).
    pub fn is_damaged(&self) -> bool {
        self.segments.iter().any(|s| !s.damage.is_empty())
    }

    pub fn events(&self) -> u64 {
        self.segments.iter().map(|s| s.events).sum()
    }

    /// The first and last id of the intact records.
    pub fn ids(&self) -> Option<(u64, u64)> {
        let first = self.segments.iter().find_map(|s| s.ids)?.0;
        let last = self.segments.iter().rev().find_map(|s| s.ids)?.1;
        Some((first, last))
    }
}

/// Reads the log in `dir` without changing anything. Holds the dir's lock while it
/// reads, so a running hub-serve (or one starting meanwhile) is reported, not raced.
///
/// # Errors
/// The dir does not exist or cannot be read ([`StoreError::Io`]), or a hub-serve
/// holds it ([`StoreError::Locked`]).
pub fn check(dir: &Path) -> Result<CheckReport, StoreError> {
    let io = |source| StoreError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    std::fs::metadata(dir).map_err(io)?;
    let _lock = match File::options()
        .read(true)
        .write(true)
        .open(dir.join("LOCK"))
    {
        Ok(f) => {
            if f.try_lock().is_err() {
                return Err(StoreError::Locked(dir.to_path_buf()));
            }
            Some(f)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    let found = list_segments(dir).map_err(io)?;
    let mut out = CheckReport::default();
    let mut holes = Vec::new();
    let mut prev: Option<u64> = None;
    for (i, (first_id, path)) in found.iter().enumerate() {
        let upper = found.get(i + 1).map(|s| s.0);
        let bytes = std::fs::read(path).map_err(io)?;
        if let Some(p) = prev
            && *first_id > p + 1
        {
            holes.push((p + 1, first_id - 1));
        }
        let mut ids: Option<(u64, u64)> = None;
        let report = segment::scan(&bytes, *first_id, upper, |r| {
            match (prev, ids) {
                (Some(p), _) if r.id > p + 1 => holes.push((p + 1, r.id - 1)),
                (None, None) if r.id > *first_id => holes.push((*first_id, r.id - 1)),
                _ => {}
            }
            prev = Some(r.id);
            ids = Some((ids.map_or(r.id, |x| x.0), r.id));
        });
        if prev.is_none() {
            prev = Some(first_id - 1);
        }
        let mut damage: Vec<Region> = report
            .damage
            .iter()
            .map(|d| Region {
                offset: d.offset,
                bytes: d.len,
                lost: d.lost_ids(report.format, upper),
            })
            .collect();
        let torn = report.torn.map(|at| (at, bytes.len() as u64 - at));
        if let (Some((at, n)), Some(upper)) = (torn, upper) {
            let after = ids.map_or(first_id - 1, |x| x.1);
            damage.push(Region {
                offset: at,
                bytes: n,
                lost: (upper - 1 > after).then_some((after + 1, upper - 1)),
            });
        }
        if let Some(lost) = damage.iter().filter_map(|d| d.lost).map(|l| l.1).max() {
            prev = Some(prev.unwrap_or(0).max(lost));
        }
        out.segments.push(SegmentCheck {
            path: path.clone(),
            format: report.format,
            events: report.meta.count,
            ids,
            bytes: bytes.len() as u64,
            damage,
            torn,
        });
    }
    let lost: Vec<(u64, u64)> = out
        .segments
        .iter()
        .flat_map(|s| s.damage.iter().filter_map(|d| d.lost))
        .collect();
    out.missing = holes
        .into_iter()
        .filter(|h| !lost.iter().any(|l| l.0 <= h.0 && h.1 <= l.1))
        .collect();
    let mut copies: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(".log.damaged"))
        })
        .collect();
    copies.sort();
    out.copies = copies;
    Ok(out)
}
