//! The stat cache: a no-op pass reads no data, a touch re-hashes without changing anything, and
//! an edit that lands in the same clock tick as the previous write is still seen.

use std::fs::{self, File, FileTimes};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use engine::{FileEntry, Ignore, StatCache, TreeHasher};

use crate::fixture::Repo;

/// Hashes `paths` through a fresh load of the stat cache, as a new process would; returns the
/// manifest and how many bytes were read.
fn pass(repo: &Repo, paths: &[&str]) -> (Vec<FileEntry>, u64) {
    let cache_path = repo.path(".slipway/stat-cache.bin");
    let stat = Mutex::new(StatCache::load(&cache_path));
    let bytes = AtomicU64::new(0);
    let progress = |n: u64| {
        bytes.fetch_add(n, Ordering::Relaxed);
    };
    let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
    let ignore = Ignore::new(&[".slipway"]).unwrap();
    let manifest =
        TreeHasher::new(repo.root(), &stat, &progress).manifest(&paths, &engine::Filter::new(&ignore)).unwrap();
    stat.into_inner().unwrap().save().unwrap();
    (manifest, bytes.into_inner())
}

/// Waits, by polling the filesystem clock with a deadline, until a new file's mtime is past
/// `path`'s ctime: from then on the stat cache may trust what it records about `path`.
fn wait_until_settled(path: &Path) {
    let ctime =
        fs::metadata(path).unwrap().ctime_nsec() as i128 + fs::metadata(path).unwrap().ctime() as i128 * 1_000_000_000;
    let probe = path.with_extension("probe");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        fs::write(&probe, b"").unwrap();
        let m = fs::metadata(&probe).unwrap();
        let now = m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128;
        fs::remove_file(&probe).unwrap();
        if now > ctime {
            return;
        }
        assert!(Instant::now() < deadline, "the filesystem clock did not advance in 10 s");
    }
}

#[test]
fn a_no_op_pass_reads_no_data_and_a_touch_rehashes_to_the_same_digest() {
    let repo = Repo::new();
    repo.write("d/one.bin", vec![7u8; 100_000]);
    repo.write("d/two.bin", vec![9u8; 50_000]);
    wait_until_settled(&repo.path("d/two.bin"));
    let (first, read) = pass(&repo, &["d"]);
    assert_eq!(read, 150_000);
    let (second, read) = pass(&repo, &["d"]);
    assert_eq!((second.clone(), read), (first.clone(), 0), "a no-op pass must read nothing");

    File::options().write(true).open(repo.path("d/one.bin")).unwrap().set_modified(SystemTime::now()).unwrap();
    let (third, read) = pass(&repo, &["d"]);
    assert_eq!((third, read), (first, 100_000), "a touched file is read again and gives the same digest");
}

#[test]
fn an_edit_in_the_same_clock_tick_as_the_last_write_is_seen() {
    let repo = Repo::new();
    let path = repo.path("f.txt");
    let mut same_tick = 0;
    for i in 0..300u32 {
        fs::write(&path, format!("{i:08}-a")).unwrap();
        let (before, _) = pass(&repo, &["f.txt"]);
        let meta = fs::metadata(&path).unwrap();
        let (ctime, mtime) = ((meta.ctime(), meta.ctime_nsec()), meta.modified().unwrap());
        fs::write(&path, format!("{i:08}-b")).unwrap();
        File::options().write(true).open(&path).unwrap().set_times(FileTimes::new().set_modified(mtime)).unwrap();
        let meta = fs::metadata(&path).unwrap();
        same_tick += usize::from((meta.ctime(), meta.ctime_nsec()) == ctime);
        let (after, _) = pass(&repo, &["f.txt"]);
        assert_ne!(
            before[0].digest, after[0].digest,
            "attempt {i}: a same-size edit with the mtime restored was missed"
        );
    }
    // How often every stat field matched: those are the cases only the marker clock catches.
    eprintln!("edits with identical stat fields: {same_tick} of 300");
}
