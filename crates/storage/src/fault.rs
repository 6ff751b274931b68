//! Power-failure injection for tests: a file system and an object store that keep, apart from
//! what a reader sees, what would be on disk if the power failed now.
//!
//! - [`Power`]: one switch shared by every faulty component. It counts mutating operations and
//!   can fail the power after a chosen number of them; from then on every operation (reads
//!   included) fails, as if the machine had stopped.
//! - [`FaultFs`]: an in-memory [`Fs`] with inodes. A write, append or truncate changes a file's
//!   volatile bytes and [`Fs::sync_file`] copies them to its durable bytes; a create or rename
//!   changes a directory's volatile entries and [`Fs::sync_dir`] makes them durable.
//! - [`FaultObjectStore`]: an object store (over `InMemory`) whose puts and deletes are volatile
//!   until [`ObjectSync::sync_object`] is called for the object, which a
//!   [`crate::synced::SyncedStore`] does after each write.
//!
//! `power_fail(seed)` then decides, per file, directory or object with unsynced changes, what a
//! disk could have kept: the last synced state (the page cache is lost), everything (the kernel
//! wrote it back in time), or for a file that only grew, the synced bytes plus a prefix of the
//! new ones (a torn write). The choice is a deterministic function of `seed`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Component, Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
    UploadPart,
};

use crate::fs::{Fs, FsLock};
use crate::synced::ObjectSync;

/// The power switch shared by the faulty components of one simulated machine.
#[derive(Debug)]
pub struct Power {
    /// Mutating operations since the last [`Power::crash_after`].
    operations: AtomicU64,
    /// The power fails at the mutating operation after this many.
    crash_after: AtomicU64,
    off: AtomicBool,
}

impl Power {
    /// Power on, no failure planned.
    pub fn new() -> Arc<Power> {
        Arc::new(Power {
            operations: AtomicU64::new(0),
            crash_after: AtomicU64::new(u64::MAX),
            off: AtomicBool::new(false),
        })
    }

    /// Restarts the count: `operations` more mutating operations succeed, the next one fails
    /// the power.
    pub fn crash_after(&self, operations: u64) {
        self.operations.store(0, Ordering::SeqCst);
        self.crash_after.store(operations, Ordering::SeqCst);
    }

    /// Mutating operations counted since the last [`Power::crash_after`] (or creation).
    pub fn operations(&self) -> u64 {
        self.operations.load(Ordering::SeqCst)
    }

    /// Whether the power has failed.
    pub fn is_off(&self) -> bool {
        self.off.load(Ordering::SeqCst)
    }

    /// Power back on, no failure planned. Call the components' `power_fail` first.
    pub fn restore(&self) {
        self.crash_after.store(u64::MAX, Ordering::SeqCst);
        self.off.store(false, Ordering::SeqCst);
    }

    /// Fails the power now.
    pub fn fail(&self) {
        self.off.store(true, Ordering::SeqCst);
    }

    /// Admits one mutating operation, or fails (failing the power when it is the planned one).
    fn mutate(&self) -> io::Result<()> {
        self.check()?;
        let operation = self.operations.fetch_add(1, Ordering::SeqCst) + 1;
        if operation > self.crash_after.load(Ordering::SeqCst) {
            self.fail();
            return Err(power_error());
        }
        Ok(())
    }

    /// Admits a read.
    fn check(&self) -> io::Result<()> {
        if self.is_off() {
            return Err(power_error());
        }
        Ok(())
    }
}

fn power_error() -> io::Error {
    io::Error::other("simulated power failure")
}

/// A small deterministic generator (splitmix64) for the power-failure choices.
struct Choices(u64);

impl Choices {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

/// What survives of one unsynced change.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Lost,
    Kept,
    Torn,
}

impl Choices {
    fn fate(&mut self) -> Fate {
        // Losing is the interesting case; keep it the most likely.
        match self.below(4) {
            0 | 1 => Fate::Lost,
            2 => Fate::Kept,
            _ => Fate::Torn,
        }
    }
}

/// Index of the root directory in [`Tree::nodes`].
const ROOT: usize = 0;

enum Node {
    File {
        volatile: Vec<u8>,
        durable: Vec<u8>,
    },
    Dir {
        volatile: BTreeMap<OsString, usize>,
        durable: BTreeMap<OsString, usize>,
    },
}

#[derive(Default)]
struct Tree {
    /// Inodes; unreachable ones stay (a test machine's lifetime is short).
    nodes: Vec<Node>,
    locks: HashSet<PathBuf>,
}

impl Tree {
    fn new() -> Self {
        Tree {
            nodes: vec![Node::Dir {
                volatile: BTreeMap::new(),
                durable: BTreeMap::new(),
            }],
            locks: HashSet::new(),
        }
    }

    fn names(path: &FsPath) -> io::Result<Vec<OsString>> {
        let mut names = Vec::new();
        for component in path.components() {
            match component {
                Component::Prefix(_) | Component::RootDir | Component::CurDir => {}
                Component::Normal(name) => names.push(name.to_os_string()),
                Component::ParentDir => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("'..' in {}", path.display()),
                    ));
                }
            }
        }
        Ok(names)
    }

    fn entries(&self, dir: usize) -> io::Result<&BTreeMap<OsString, usize>> {
        match &self.nodes[dir] {
            Node::Dir { volatile, .. } => Ok(volatile),
            Node::File { .. } => Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            )),
        }
    }

    fn entries_mut(&mut self, dir: usize) -> io::Result<&mut BTreeMap<OsString, usize>> {
        match &mut self.nodes[dir] {
            Node::Dir { volatile, .. } => Ok(volatile),
            Node::File { .. } => Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            )),
        }
    }

    fn resolve(&self, path: &FsPath) -> io::Result<Option<usize>> {
        let mut node = ROOT;
        for name in Self::names(path)? {
            match self.entries(node)?.get(&name) {
                Some(&child) => node = child,
                None => return Ok(None),
            }
        }
        Ok(Some(node))
    }

    fn existing(&self, path: &FsPath) -> io::Result<usize> {
        self.resolve(path)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} not found", path.display()),
            )
        })
    }

    /// The directory holding `path` and the name of `path` in it.
    fn parent(&self, path: &FsPath) -> io::Result<(usize, OsString)> {
        let name = path.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} has no file name", path.display()),
            )
        })?;
        let parent = path.parent().unwrap_or(FsPath::new("/"));
        let dir = self.existing(parent)?;
        self.entries(dir)?;
        Ok((dir, name.to_os_string()))
    }

    fn file_mut(&mut self, node: usize) -> io::Result<&mut Vec<u8>> {
        match &mut self.nodes[node] {
            Node::File { volatile, .. } => Ok(volatile),
            Node::Dir { .. } => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            )),
        }
    }

    /// The file at `path`, created empty when missing.
    fn open_or_create(&mut self, path: &FsPath) -> io::Result<usize> {
        if let Some(node) = self.resolve(path)? {
            self.file_mut(node)?;
            return Ok(node);
        }
        let (dir, name) = self.parent(path)?;
        let node = self.nodes.len();
        self.nodes.push(Node::File {
            volatile: Vec::new(),
            durable: Vec::new(),
        });
        self.entries_mut(dir)?.insert(name, node);
        Ok(node)
    }

    fn power_fail(&mut self, choices: &mut Choices) {
        for node in &mut self.nodes {
            match node {
                Node::File { volatile, durable } if volatile != durable => {
                    let grew = volatile.len() > durable.len() && volatile.starts_with(durable);
                    match choices.fate() {
                        Fate::Kept => durable.clone_from(volatile),
                        Fate::Torn if grew => {
                            let extra = (volatile.len() - durable.len()) as u64;
                            let keep = durable.len() + choices.below(extra + 1) as usize;
                            volatile.truncate(keep);
                            durable.clone_from(volatile);
                        }
                        Fate::Torn | Fate::Lost => volatile.clone_from(durable),
                    }
                }
                Node::Dir { volatile, durable } if volatile != durable => match choices.fate() {
                    Fate::Kept => durable.clone_from(volatile),
                    Fate::Torn | Fate::Lost => volatile.clone_from(durable),
                },
                Node::File { .. } | Node::Dir { .. } => {}
            }
        }
    }
}

/// An in-memory file system that forgets unsynced changes at a power failure.
#[derive(Clone)]
pub struct FaultFs {
    power: Arc<Power>,
    tree: Arc<Mutex<Tree>>,
}

impl fmt::Debug for FaultFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultFs").finish_non_exhaustive()
    }
}

impl FaultFs {
    /// An empty file system (only `/`) on `power`.
    pub fn new(power: Arc<Power>) -> Self {
        FaultFs {
            power,
            tree: Arc::new(Mutex::new(Tree::new())),
        }
    }

    /// Drops (or per `seed` keeps, or tears) every change not yet synced, as a power failure
    /// would. Call it while no operation runs, before [`Power::restore`].
    pub fn power_fail(&self, seed: u64) {
        self.tree().power_fail(&mut Choices(seed));
    }

    fn tree(&self) -> MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks the tree and admits one mutating operation.
    fn mutating(&self) -> io::Result<MutexGuard<'_, Tree>> {
        let tree = self.tree();
        self.power.mutate()?;
        Ok(tree)
    }

    fn reading(&self) -> io::Result<MutexGuard<'_, Tree>> {
        let tree = self.tree();
        self.power.check()?;
        Ok(tree)
    }
}

impl Fs for FaultFs {
    fn read(&self, path: &FsPath) -> io::Result<Vec<u8>> {
        let mut tree = self.reading()?;
        let node = tree.existing(path)?;
        Ok(tree.file_mut(node)?.clone())
    }

    fn exists(&self, path: &FsPath) -> io::Result<bool> {
        Ok(self.reading()?.resolve(path)?.is_some())
    }

    fn create_dir_all(&self, path: &FsPath) -> io::Result<()> {
        let mut tree = self.mutating()?;
        let mut node = ROOT;
        for name in Tree::names(path)? {
            let next = tree.entries(node)?.get(&name).copied();
            node = match next {
                Some(child) => child,
                None => {
                    let child = tree.nodes.len();
                    tree.nodes.push(Node::Dir {
                        volatile: BTreeMap::new(),
                        durable: BTreeMap::new(),
                    });
                    tree.entries_mut(node)?.insert(name, child);
                    child
                }
            };
        }
        tree.entries(node).map(|_| ())
    }

    fn write(&self, path: &FsPath, bytes: &[u8]) -> io::Result<()> {
        let mut tree = self.mutating()?;
        let node = tree.open_or_create(path)?;
        let file = tree.file_mut(node)?;
        file.clear();
        file.extend_from_slice(bytes);
        Ok(())
    }

    fn append(&self, path: &FsPath, bytes: &[u8]) -> io::Result<()> {
        let mut tree = self.mutating()?;
        let node = tree.open_or_create(path)?;
        tree.file_mut(node)?.extend_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, path: &FsPath, len_bytes: u64) -> io::Result<()> {
        let mut tree = self.mutating()?;
        let node = tree.existing(path)?;
        let len = usize::try_from(len_bytes).map_err(io::Error::other)?;
        tree.file_mut(node)?.resize(len, 0);
        Ok(())
    }

    fn sync_file(&self, path: &FsPath) -> io::Result<()> {
        let mut tree = self.mutating()?;
        let node = tree.existing(path)?;
        match &mut tree.nodes[node] {
            Node::File { volatile, durable } => durable.clone_from(volatile),
            Node::Dir { .. } => {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    "is a directory",
                ));
            }
        }
        Ok(())
    }

    fn rename(&self, source: &FsPath, target: &FsPath) -> io::Result<()> {
        let mut tree = self.mutating()?;
        let (source_dir, source_name) = tree.parent(source)?;
        let (target_dir, target_name) = tree.parent(target)?;
        let node = tree.existing(source)?;
        if let Some(existing) = tree.resolve(target)?
            && matches!(tree.nodes[existing], Node::Dir { .. })
        {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "rename over a directory",
            ));
        }
        tree.entries_mut(source_dir)?.remove(&source_name);
        tree.entries_mut(target_dir)?.insert(target_name, node);
        Ok(())
    }

    fn sync_dir(&self, path: &FsPath) -> io::Result<()> {
        let mut tree = self.mutating()?;
        let node = tree.existing(path)?;
        match &mut tree.nodes[node] {
            Node::Dir { volatile, durable } => durable.clone_from(volatile),
            Node::File { .. } => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    "not a directory",
                ));
            }
        }
        Ok(())
    }

    fn try_lock(&self, path: &FsPath) -> io::Result<Option<FsLock>> {
        let mut tree = self.reading()?;
        if !tree.locks.insert(path.to_path_buf()) {
            return Ok(None);
        }
        Ok(Some(Box::new(FaultLock {
            tree: Arc::clone(&self.tree),
            path: path.to_path_buf(),
        })))
    }
}

/// A held [`FaultFs`] lock; released on drop (locks are not files, so power failures keep
/// them until their holder is dropped).
struct FaultLock {
    tree: Arc<Mutex<Tree>>,
    path: PathBuf,
}

impl Drop for FaultLock {
    fn drop(&mut self) {
        self.tree
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .locks
            .remove(&self.path);
    }
}

/// An object store whose writes are volatile until synced; see the module documentation.
#[derive(Clone)]
pub struct FaultObjectStore {
    state: Arc<ObjectState>,
}

struct ObjectState {
    power: Arc<Power>,
    /// What readers see; replaced wholesale at a power failure.
    visible: Mutex<Arc<InMemory>>,
    /// What a power failure keeps for sure.
    durable: Mutex<HashMap<Path, Bytes>>,
    /// Objects written or deleted since their last sync.
    dirty: Mutex<HashSet<Path>>,
}

impl fmt::Debug for FaultObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultObjectStore").finish_non_exhaustive()
    }
}

impl fmt::Display for FaultObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FaultObjectStore")
    }
}

fn store_error(e: io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultObjectStore",
        source: Box::new(e),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl ObjectState {
    fn visible(&self) -> Arc<InMemory> {
        Arc::clone(&lock(&self.visible))
    }

    fn mutate(&self, location: &Path) -> Result<Arc<InMemory>> {
        self.power.mutate().map_err(store_error)?;
        lock(&self.dirty).insert(location.clone());
        Ok(self.visible())
    }

    fn read(&self) -> Result<Arc<InMemory>> {
        self.power.check().map_err(store_error)?;
        Ok(self.visible())
    }
}

impl FaultObjectStore {
    /// An empty store on `power`.
    pub fn new(power: Arc<Power>) -> Self {
        FaultObjectStore {
            state: Arc::new(ObjectState {
                power,
                visible: Mutex::new(Arc::new(InMemory::new())),
                durable: Mutex::new(HashMap::new()),
                dirty: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// Drops (or per `seed` keeps) every put and delete not yet synced. Call it while no
    /// operation runs, before [`Power::restore`].
    pub async fn power_fail(&self, seed: u64) {
        let mut choices = Choices(seed);
        let old = self.state.visible();
        let mut dirty: Vec<Path> = lock(&self.state.dirty).drain().collect();
        dirty.sort();
        for location in dirty {
            if choices.fate() != Fate::Kept {
                continue;
            }
            let current = match old.get(&location).await {
                Ok(result) => Some(result.bytes().await.expect("in-memory read")),
                Err(_) => None,
            };
            let mut durable = lock(&self.state.durable);
            match current {
                Some(bytes) => durable.insert(location, bytes),
                None => durable.remove(&location),
            };
        }
        let fresh = Arc::new(InMemory::new());
        let durable: Vec<(Path, Bytes)> = lock(&self.state.durable)
            .iter()
            .map(|(location, bytes)| (location.clone(), bytes.clone()))
            .collect();
        for (location, bytes) in durable {
            fresh
                .put(&location, bytes.into())
                .await
                .expect("in-memory put");
        }
        *lock(&self.state.visible) = fresh;
    }
}

#[async_trait]
impl ObjectSync for FaultObjectStore {
    async fn sync_object(&self, location: &Path) -> Result<()> {
        self.state.power.mutate().map_err(store_error)?;
        let current = match self.state.visible().get(location).await {
            Ok(result) => Some(result.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        lock(&self.state.dirty).remove(location);
        let mut durable = lock(&self.state.durable);
        match current {
            Some(bytes) => durable.insert(location.clone(), bytes),
            None => durable.remove(location),
        };
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for FaultObjectStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let visible = self.state.mutate(location)?;
        visible.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let upload = self
            .state
            .read()?
            .put_multipart_opts(location, opts)
            .await?;
        Ok(Box::new(FaultUpload {
            upload,
            location: location.clone(),
            state: Arc::clone(&self.state),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.state.read()?.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let state = Arc::clone(&self.state);
        locations
            .then(move |location| {
                let state = Arc::clone(&state);
                async move {
                    let location = location?;
                    let visible = state.mutate(&location)?;
                    visible.delete(&location).await?;
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match self.state.read() {
            Ok(visible) => visible.list(prefix),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.state.read()?.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let visible = self.state.mutate(to)?;
        visible.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let visible = self.state.mutate(to)?;
        lock(&self.state.dirty).insert(from.clone());
        visible.rename_opts(from, to, options).await
    }
}

/// A multipart upload whose completion is one volatile write.
#[derive(Debug)]
struct FaultUpload {
    upload: Box<dyn MultipartUpload>,
    location: Path,
    state: Arc<ObjectState>,
}

impl fmt::Debug for ObjectState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectState").finish_non_exhaustive()
    }
}

#[async_trait]
impl MultipartUpload for FaultUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.upload.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.state.mutate(&self.location)?;
        self.upload.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.upload.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::write_file_atomic;
    use crate::synced::SyncedStore;

    #[test]
    fn unsynced_file_changes_are_lost_and_synced_ones_kept() {
        let power = Power::new();
        let fs = FaultFs::new(Arc::clone(&power));
        let dir = FsPath::new("/data/raft");
        fs.create_dir_all(dir).unwrap();
        fs.sync_dir(FsPath::new("/")).unwrap();
        fs.sync_dir(FsPath::new("/data")).unwrap();
        write_file_atomic(&fs, dir, "vote", b"v1").unwrap();
        fs.append(&dir.join("log"), b"synced").unwrap();
        fs.sync_file(&dir.join("log")).unwrap();
        fs.sync_dir(dir).unwrap();
        fs.append(&dir.join("log"), b"+lost").unwrap();
        fs.write(&dir.join("new"), b"never synced").unwrap();
        power.crash_after(0);
        assert!(fs.append(&dir.join("log"), b"after").is_err());
        assert!(fs.read(&dir.join("log")).is_err(), "reads fail while off");
        // No seed invents bytes or loses synced ones; some lose every unsynced change.
        let mut lost_all = false;
        for seed in 0..64 {
            let copy = clone_tree(&fs);
            copy.power_fail(seed);
            power.restore();
            let log = copy.read(&dir.join("log")).unwrap();
            assert!(log.starts_with(b"synced") && b"synced+lost".starts_with(&log[..]));
            assert_eq!(copy.read(&dir.join("vote")).unwrap(), b"v1");
            lost_all |= log == b"synced" && !copy.exists(&dir.join("new")).unwrap();
            power.fail();
        }
        assert!(lost_all, "some seed loses every unsynced change");
    }

    /// A copy of `fs`'s tree on the same power, so each seed starts from one state.
    fn clone_tree(fs: &FaultFs) -> FaultFs {
        let tree = fs.tree();
        let nodes = tree
            .nodes
            .iter()
            .map(|node| match node {
                Node::File { volatile, durable } => Node::File {
                    volatile: volatile.clone(),
                    durable: durable.clone(),
                },
                Node::Dir { volatile, durable } => Node::Dir {
                    volatile: volatile.clone(),
                    durable: durable.clone(),
                },
            })
            .collect();
        FaultFs {
            power: Arc::clone(&fs.power),
            tree: Arc::new(Mutex::new(Tree {
                nodes,
                locks: HashSet::new(),
            })),
        }
    }

    #[tokio::test]
    async fn synced_store_puts_survive_and_plain_puts_may_not() {
        let power = Power::new();
        let faulty = FaultObjectStore::new(Arc::clone(&power));
        let synced = SyncedStore::new(Arc::new(faulty.clone()), Arc::new(faulty.clone()));
        let kept = Path::from("w/t/metadata/1.json");
        synced.put(&kept, "durable".into()).await.unwrap();
        let mut lost_once = false;
        for i in 0..16 {
            let location = Path::from(format!("w/t/data/{i}.parquet"));
            faulty.put(&location, "volatile".into()).await.unwrap();
            power.fail();
            faulty.power_fail(i).await;
            power.restore();
            let bytes = faulty.get(&kept).await.unwrap().bytes().await.unwrap();
            assert_eq!(&bytes[..], b"durable");
            lost_once |= faulty.get(&location).await.is_err();
        }
        assert!(lost_once, "some power failure loses an unsynced put");
    }
}
