//! Follower tests on real files in temp dirs, without a hub: every emitted item is
//! acknowledged at once unless a test says otherwise.

use super::*;
use std::io::Write;

#[derive(Debug, Clone, PartialEq)]
enum Got {
    Line(String, bool),
    Rotated(Ending),
}

fn line(s: &str) -> Got {
    Got::Line(s.into(), false)
}

struct T {
    f: Follower,
    saved: Option<FileState>,
    keys: Vec<String>,
}

impl T {
    fn new(path: &Path, start: Start) -> T {
        T::with(path, start, DEFAULT_MAX_LINE, None)
    }

    fn with(path: &Path, start: Start, max_line: usize, saved: Option<FileState>) -> T {
        T {
            f: Follower::new(path.to_path_buf(), "log:t".into(), start, max_line),
            saved,
            keys: Vec::new(),
        }
    }

    /// Steps until nothing more comes, acknowledging everything.
    fn step(&mut self) -> Vec<Got> {
        let mut all = Vec::new();
        loop {
            let mut got = Vec::new();
            let mut acks = Vec::new();
            let mut budget = Budget {
                items: 1000,
                bytes: 1 << 20,
            };
            let st = self.f.step(
                self.saved.as_ref(),
                0,
                &mut budget,
                &mut |item| match item {
                    Item::Line {
                        key_prefix,
                        uid,
                        start,
                        end,
                        bytes,
                        partial,
                    } => {
                        self.keys.push(format!("{key_prefix}{start}"));
                        got.push(Got::Line(String::from_utf8_lossy(bytes).into(), partial));
                        acks.push((uid, end));
                    }
                    Item::Rotated {
                        key_prefix,
                        uid,
                        end,
                        reason,
                    } => {
                        self.keys.push(format!("{key_prefix}{end}:rotated"));
                        got.push(Got::Rotated(reason));
                        acks.push((uid, end));
                    }
                },
            );
            for (uid, end) in acks {
                self.f.acked(uid, end);
            }
            if got.is_empty() && !st.identity && !st.more {
                return all;
            }
            all.extend(got);
        }
    }
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn appends_partial_lines_and_crlf() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "old1\nold2\n");
    let mut t = T::new(&p, Start::End);
    assert_eq!(t.step(), vec![]);
    append(&p, "one\ntw");
    assert_eq!(t.step(), vec![line("one")]);
    append(&p, "o\r\n\nthree\n");
    assert_eq!(t.step(), vec![line("two"), line(""), line("three")]);
    assert_eq!(t.step(), vec![]);
}

#[test]
fn start_at_end_keeps_a_partial_last_line_whole() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "done\nhalf");
    let mut t = T::new(&p, Start::End);
    assert_eq!(t.step(), vec![]);
    append(&p, "-line\n");
    assert_eq!(t.step(), vec![line("half-line")]);
}

#[test]
fn last_n_and_from_start() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "1\n2\n3\n4");
    assert_eq!(
        T::new(&p, Start::Last(2)).step(),
        vec![line("2"), line("3")]
    );
    assert_eq!(
        T::new(&p, Start::Last(10)).step(),
        vec![line("1"), line("2"), line("3")]
    );
    assert_eq!(
        T::new(&p, Start::FromStart).step(),
        vec![line("1"), line("2"), line("3")]
    );
    // large enough to need several backward reads
    let q = dir.path().join("big.log");
    let text: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    append(&q, &text);
    assert_eq!(
        T::new(&q, Start::Last(2)).step(),
        vec![line("line 19998"), line("line 19999")]
    );
    let all = T::new(&q, Start::FromStart).step();
    assert_eq!(all.len(), 20_000);
    assert_eq!(all[12345], line("line 12345"));
}

#[test]
fn rename_rotation_drains_the_old_file_first() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "");
    let mut t = T::new(&p, Start::End);
    assert_eq!(t.step(), vec![]);
    append(&p, "a\n");
    assert_eq!(t.step(), vec![line("a")]);
    append(&p, "b\npartial");
    std::fs::rename(&p, dir.path().join("a.log.1")).unwrap();
    append(&p, "c\n");
    assert_eq!(
        t.step(),
        vec![
            line("b"),
            line("partial"),
            Got::Rotated(Ending::Renamed),
            line("c")
        ]
    );
    append(&p, "d\n");
    assert_eq!(t.step(), vec![line("d")]);
}

#[test]
fn the_new_file_waits_until_the_old_one_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "");
    let mut f = Follower::new(p.clone(), "log:a".into(), Start::End, DEFAULT_MAX_LINE);
    let mut budget = Budget {
        items: 100,
        bytes: 1 << 20,
    };
    let mut n = 0;
    f.step(None, 0, &mut budget, &mut |_| n += 1);
    append(&p, "a\n");
    std::fs::rename(&p, dir.path().join("a.log.1")).unwrap();
    append(&p, "new\n");
    f.step(None, 0, &mut budget, &mut |_| n += 1);
    assert_eq!(n, 2, "the last line and the rotation");
    // two events in flight: the new file is not opened
    let st = f.step(None, 2, &mut budget, &mut |_| n += 1);
    assert_eq!((n, st.identity), (2, false));
    let st = f.step(None, 0, &mut budget, &mut |_| n += 1);
    assert_eq!((n, st.identity), (3, true));
}

#[test]
fn copytruncate_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "");
    let mut t = T::new(&p, Start::End);
    assert_eq!(t.step(), vec![]);
    append(&p, "first line\nsecond line\n");
    assert_eq!(t.step(), vec![line("first line"), line("second line")]);
    std::fs::copy(&p, dir.path().join("a.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&p, "x\n");
    assert_eq!(t.step(), vec![Got::Rotated(Ending::Truncated), line("x")]);
    // truncated and rewritten past the old size before we looked: the first bytes tell
    std::fs::write(&p, "a much longer replacement line\n").unwrap();
    assert_eq!(
        t.step(),
        vec![
            Got::Rotated(Ending::Truncated),
            line("a much longer replacement line")
        ]
    );
}

#[test]
fn copytruncate_hole_of_nuls_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "");
    let mut t = T::new(&p, Start::End);
    assert_eq!(t.step(), vec![]);
    append(&p, "0123456789\n");
    assert_eq!(t.step(), vec![line("0123456789")]);
    // a writer without O_APPEND keeps its offset after the truncation
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(0).unwrap();
    f.write_all_at(b"after\n", 11).unwrap();
    assert_eq!(
        t.step(),
        vec![Got::Rotated(Ending::Truncated), line("after")]
    );
}

#[test]
fn delete_and_recreate() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "");
    let mut t = T::new(&p, Start::End);
    assert_eq!(t.step(), vec![]);
    append(&p, "a\n");
    assert_eq!(t.step(), vec![line("a")]);
    append(&p, "b\n");
    std::fs::remove_file(&p).unwrap();
    assert_eq!(t.step(), vec![line("b"), Got::Rotated(Ending::Deleted)]);
    assert_eq!(t.step(), vec![]);
    append(&p, "c\n");
    assert_eq!(t.step(), vec![line("c")]);
}

#[test]
fn a_file_that_appears_later_is_read_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("later.log");
    let mut t = T::new(&p, Start::End);
    assert_eq!(t.step(), vec![]);
    append(&p, "1\n2\n");
    assert_eq!(t.step(), vec![line("1"), line("2")]);
}

#[test]
fn over_long_lines_are_split_at_a_character() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "");
    let mut t = T::with(&p, Start::End, 64, None);
    assert_eq!(t.step(), vec![]);
    append(&p, &format!("{}\n", "x".repeat(150)));
    assert_eq!(
        t.step(),
        vec![
            Got::Line("x".repeat(64), true),
            Got::Line("x".repeat(64), true),
            Got::Line("x".repeat(22), false),
        ]
    );
    // no newline at all: full pieces go out, the rest waits
    append(&p, &"é".repeat(40)); // 80 bytes, 2 per character
    assert_eq!(t.step(), vec![Got::Line("é".repeat(32), true)]);
    append(&p, "\n");
    assert_eq!(t.step(), vec![Got::Line("é".repeat(8), false)]);
    // control characters count by their JSON escape
    append(&p, &format!("{}\n", "\u{1}".repeat(20)));
    assert_eq!(
        t.step(),
        vec![
            Got::Line("\u{1}".repeat(10), true),
            Got::Line("\u{1}".repeat(10), false),
        ]
    );
}

#[test]
fn cut_points() {
    assert_eq!(cut_point(b"abc", 10), 3);
    assert_eq!(cut_point(b"abcdef", 4), 4);
    assert_eq!(cut_point("aé".as_bytes(), 2), 1, "never inside a character");
    assert_eq!(cut_point(b"\"\"\"", 4), 2);
    assert_eq!(
        cut_point(b"a\xffb", 4),
        2,
        "an invalid byte counts as U+FFFD"
    );
    assert_eq!(cut_point("€".as_bytes(), 1), 3, "at least one character");
}

#[test]
fn binary_files_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.bin");
    std::fs::write(&p, b"ELF\0\x01\x02\n").unwrap();
    let mut t = T::new(&p, Start::FromStart);
    assert_eq!(t.step(), vec![]);
    append(&p, "text\n");
    assert_eq!(t.step(), vec![]);
    // replaced by a text file: followed
    std::fs::remove_file(&p).unwrap();
    append(&p, "hello\n");
    assert_eq!(t.step(), vec![line("hello")]);
}

#[test]
fn a_directory_is_reported_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = T::new(dir.path(), Start::FromStart);
    assert_eq!(t.step(), vec![]);
}

#[test]
fn resume_from_saved_state_with_the_same_keys() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "");
    let mut t = T::new(&p, Start::End);
    assert_eq!(t.step(), vec![]);
    append(&p, "a\nb\n");
    assert_eq!(t.step(), vec![line("a"), line("b")]);
    let saved = t.f.file_state().unwrap();
    assert_eq!(saved.offset, 4);
    append(&p, "c\n");
    let mut t2 = T::with(&p, Start::End, DEFAULT_MAX_LINE, Some(saved.clone()));
    assert_eq!(t2.step(), vec![line("c")]);
    // the same line at the same place has the same key in both runs
    assert_eq!(t.step(), vec![line("c")]);
    assert_eq!(t.keys.last(), t2.keys.last());
    // a saved position before "b": b is read again, under its old key
    let mut earlier = saved;
    earlier.offset = 2;
    let mut t3 = T::with(&p, Start::End, DEFAULT_MAX_LINE, Some(earlier));
    assert_eq!(t3.step(), vec![line("b"), line("c")]);
    assert_eq!(t3.keys[0], t.keys[1]);
}

#[test]
fn a_file_replaced_while_stopped_is_read_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "");
    let mut t = T::new(&p, Start::End);
    assert_eq!(t.step(), vec![]);
    append(&p, "old content\n");
    t.step();
    let saved = t.f.file_state().unwrap();
    drop(t);
    std::fs::remove_file(&p).unwrap();
    append(&p, "new\n"); // may even reuse the inode
    let mut t2 = T::with(&p, Start::End, DEFAULT_MAX_LINE, Some(saved.clone()));
    assert_eq!(t2.step(), vec![line("new")]);
    assert_ne!(t2.f.file_state().unwrap().uid, saved.uid);
}

#[test]
fn a_file_rotated_while_stopped_is_finished_first() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "");
    let mut t = T::new(&p, Start::End);
    assert_eq!(t.step(), vec![]);
    append(&p, "a\n");
    assert_eq!(t.step(), vec![line("a")]);
    let saved = t.f.file_state().unwrap();
    drop(t);
    append(&p, "b\n");
    std::fs::rename(&p, dir.path().join("a.log.1")).unwrap();
    append(&p, "c\n");
    let mut t2 = T::with(&p, Start::End, DEFAULT_MAX_LINE, Some(saved));
    assert_eq!(
        t2.step(),
        vec![line("b"), Got::Rotated(Ending::Renamed), line("c")]
    );
}

#[test]
fn truncated_while_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "");
    let mut t = T::new(&p, Start::End);
    assert_eq!(t.step(), vec![]);
    append(&p, "aaaa\nbbbb\n");
    t.step();
    let saved = t.f.file_state().unwrap();
    drop(t);
    std::fs::write(&p, "c\n").unwrap();
    let mut t2 = T::with(&p, Start::End, DEFAULT_MAX_LINE, Some(saved));
    assert_eq!(t2.step(), vec![line("c")]);
}

#[test]
fn rewind_reads_unacknowledged_lines_again() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    append(&p, "");
    let mut f = Follower::new(p.clone(), "log:a".into(), Start::End, DEFAULT_MAX_LINE);
    let mut budget = Budget {
        items: 100,
        bytes: 1 << 20,
    };
    f.step(None, 0, &mut budget, &mut |_| {});
    append(&p, "a\nb\n");
    let mut keys = Vec::new();
    f.step(None, 0, &mut budget, &mut |i| {
        if let Item::Line {
            key_prefix,
            start,
            uid,
            end,
            ..
        } = i
        {
            keys.push((format!("{key_prefix}{start}"), uid, end));
        }
    });
    f.acked(keys[0].1, keys[0].2);
    f.rewind();
    let mut again = Vec::new();
    f.step(None, 0, &mut budget, &mut |i| {
        if let Item::Line {
            key_prefix, start, ..
        } = i
        {
            again.push(format!("{key_prefix}{start}"));
        }
    });
    assert_eq!(again, vec![keys[1].0.clone()]);
}

#[test]
fn budget_limits_a_step_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    let long = "y".repeat(300);
    let text: String = (0..100).map(|i| format!("{i}\n")).collect::<String>() + &long + "\nend\n";
    append(&p, &text);
    let mut f = Follower::new(p.clone(), "log:a".into(), Start::FromStart, 64);
    let mut got: Vec<String> = Vec::new();
    let mut steps = 0;
    loop {
        let mut budget = Budget {
            items: 7,
            bytes: 1 << 20,
        };
        let mut n = 0;
        let st = f.step(None, 0, &mut budget, &mut |i| {
            if let Item::Line { bytes, .. } = i {
                got.push(String::from_utf8_lossy(bytes).into());
            }
            n += 1;
        });
        assert!(n <= 7, "a step stays within its budget");
        steps += 1;
        if !st.more && n == 0 {
            break;
        }
        assert!(f.backlog() > 0 || !st.more);
    }
    assert!(steps > 15);
    let mut expected: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    // the over-long line is cut at the same places however the budget fell
    expected.extend(
        long.as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into()),
    );
    expected.push("end".into());
    assert_eq!(got, expected);
    assert_eq!(f.backlog(), 0);
}

#[test]
fn a_renamed_file_is_read_on_during_the_rotate_wait() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    let mut app = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .unwrap();
    let mut t = T::new(&p, Start::End);
    t.f.rotate_wait = Duration::from_millis(300);
    assert_eq!(t.step(), vec![]);
    app.write_all(b"a\npart").unwrap();
    std::fs::rename(&p, dir.path().join("a.log.1")).unwrap();
    append(&p, "new\n");
    // the partial line waits: the writer may still finish it
    assert_eq!(
        t.step(),
        vec![line("a"), Got::Rotated(Ending::Renamed), line("new")]
    );
    let st = t.f.file_state().unwrap();
    assert_eq!(st.rotated.len(), 1);
    assert_eq!(st.rotated[0].offset, 2, "up to the partial line");
    app.write_all(b"ial\nlate\nend").unwrap();
    append(&p, "new 2\n");
    assert_eq!(t.step(), vec![line("partial"), line("late"), line("new 2")]);
    assert_eq!(t.f.file_state().unwrap().rotated[0].offset, 15);
    // a restart now resumes the rotated file under its old identity
    let mut t2 = T::with(
        &p,
        Start::End,
        DEFAULT_MAX_LINE,
        Some(t.f.file_state().unwrap()),
    );
    assert!(t.f.wake_at().is_some());
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(t.step(), vec![line("end")]);
    assert!(t.f.file_state().unwrap().rotated.is_empty());
    assert!(t.f.wake_at().is_none());
    // t2 has a zero rotate-wait: it reads the rest of the rotated file and closes it
    assert_eq!(t2.step(), vec![line("end")]);
    assert_eq!(t.keys.last(), t2.keys.last(), "the same key in both runs");
    assert!(t2.f.file_state().unwrap().rotated.is_empty());
}

#[test]
fn a_zero_rotate_wait_drains_the_renamed_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.log");
    let mut app = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .unwrap();
    let mut t = T::new(&p, Start::End);
    assert_eq!(t.step(), vec![]);
    app.write_all(b"a\n").unwrap();
    std::fs::rename(&p, dir.path().join("a.log.1")).unwrap();
    append(&p, "new\n");
    assert_eq!(
        t.step(),
        vec![line("a"), Got::Rotated(Ending::Renamed), line("new")]
    );
    app.write_all(b"lost\n").unwrap();
    assert_eq!(t.step(), vec![]);
    assert!(t.f.file_state().unwrap().rotated.is_empty());
}

/// Bytes a log may hold, as pieces: plain text, line ends (`\r\n` too), the NUL
/// bytes of a copytruncate hole, characters of two to four bytes (cut anywhere
/// by a read), an invalid byte, and characters JSON escapes.
fn log_bytes() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let piece = prop::sample::select(vec![
        &b"a"[..],
        b"bb",
        b"\n",
        b"\n",
        b"\r\n",
        b"\r",
        b"\0",
        b"\0\0",
        "é".as_bytes(),
        "✓".as_bytes(),
        "😀".as_bytes(),
        b"\xff",
        b"\"",
        b"\\",
        b"\x01",
    ]);
    prop::collection::vec(piece, 0..80).prop_map(|p| p.concat())
}

/// The lines of a log are the same whatever the sizes of the reads that bring it
/// in and the budgets of the scans (over-long lines cut into the same pieces).
#[test]
fn lines_do_not_depend_on_the_chunking() {
    use crate::testgen::count;
    use proptest::prelude::*;
    let cases = (
        log_bytes(),
        prop::collection::vec(any::<usize>(), 0..12),
        prop::collection::vec(1usize..4, 0..4),
        prop_oneof![6usize..40, Just(DEFAULT_MAX_LINE)],
    )
        .prop_map(|(input, cuts, budgets, max_line)| {
            let cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
            (input, cuts, budgets, max_line)
        });
    count(cases, |(input, cuts, budgets, max_line)| {
        crate::fuzzing::lines(&input, &cuts, &budgets, max_line);
        true
    });
}

/// Found by `lines_do_not_depend_on_the_chunking`: NUL bytes right after a piece
/// of an over-long line were skipped as a copytruncate hole when a read (or a
/// budget) stopped at that piece, and kept when it did not.
#[test]
fn nul_bytes_after_a_piece_are_kept_wherever_a_read_stops() {
    let split = crate::fuzzing::split_lines;
    let want = vec![
        (0, 6, b"aaaaaa".to_vec(), true),
        (6, 7, b"\0".to_vec(), true),
        (7, 9, b"b".to_vec(), false),
    ];
    assert_eq!(split(b"aaaaaa\0b\n", &[], &[], 6), want);
    assert_eq!(split(b"aaaaaa\0b\n", &[7], &[], 6), want);
    assert_eq!(split(b"aaaaaa\0b\n", &[], &[1], 6), want);
    // A hole at the start of a line is still skipped, however it arrives.
    for cut in 0..=6 {
        assert_eq!(
            split(b"a\n\0\0\0b\n", &[cut], &[1], 6),
            vec![(0, 2, b"a".to_vec(), false), (5, 7, b"b".to_vec(), false)],
            "cut at {cut}"
        );
    }
    // And the piece flushed at the end of the file keeps its NULs too.
    assert_eq!(
        split(b"aaaaaa\0", &[], &[], 6),
        vec![
            (0, 6, b"aaaaaa".to_vec(), true),
            (6, 7, b"\0".to_vec(), false)
        ]
    );
}

/// Found by `lines_do_not_depend_on_the_chunking`: where a read stopped after the
/// `\r` of a `\r\n`, or inside a character, an over-long unfinished line was cut
/// by the cost of that `\r` (or of the half character) and not as it ends up.
#[test]
fn an_unfinished_line_is_cut_by_what_more_input_cannot_change() {
    let split = crate::fuzzing::split_lines;
    let want = vec![
        (0, 3, b"bb".to_vec(), false),
        (3, 8, "bb✓".as_bytes().to_vec(), true),
        (8, 11, b"\x01".to_vec(), false),
    ];
    let text = "bb\nbb✓\u{1}\r\n".as_bytes();
    for cut in 0..=text.len() {
        assert_eq!(split(text, &[cut], &[], 6), want, "cut at {cut}");
    }
    let text = "aaaaaé\n".as_bytes();
    let want = vec![
        (0, 5, b"aaaaa".to_vec(), true),
        (5, 8, "é".as_bytes().to_vec(), false),
    ];
    for cut in 0..=text.len() {
        assert_eq!(split(text, &[cut], &[], 6), want, "cut at {cut}");
    }
    // The emoji costs 4: after five bytes of cost it goes to the next piece.
    let text = "aa😀\n".as_bytes();
    let whole = split(text, &[], &[], 5);
    for cut in 0..=text.len() {
        assert_eq!(split(text, &[cut], &[], 5), whole, "cut at {cut}");
    }
}
