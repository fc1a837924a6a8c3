//! Git for a run: its own branch `nightshift/<run-id>` checked out in its own
//! worktree, so the user's branch, index and working tree are never touched. Accepted
//! variants become commits whose messages carry the evidence as trailers; rejected
//! ones are discarded from the worktree and live on only in the journal.
//!
//! The run starts from the repository's HEAD commit: uncommitted edits in the user's
//! tree are not part of it (`dirty` lists them so the run can say so).

use std::path::{Path, PathBuf};

use git2::{
    BranchType, Repository, ResetType, Signature, Status, StatusOptions, WorktreeAddOptions,
};

#[derive(Debug, thiserror::Error)]
pub enum VcsError {
    #[error("{}: not inside a git repository", path.display())]
    NoRepository {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("run id `{0}` is not usable in a branch name (letters, digits, '-', '_', '.')")]
    BadRunId(String),
    #[error("the repository has no commit to start from")]
    NoHead(#[source] git2::Error),
    #[error("{action}")]
    Git {
        action: String,
        #[source]
        source: git2::Error,
    },
    #[error("{action} {}", path.display())]
    Io {
        action: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn git(action: &str) -> impl FnOnce(git2::Error) -> VcsError + '_ {
    move |source| VcsError::Git {
        action: action.to_string(),
        source,
    }
}

/// A run's branch and worktree.
pub struct Workspace {
    repo: Repository,
    /// The worktree's root: the repository's files at the run's branch.
    pub root: PathBuf,
    pub branch: String,
    /// The commit the run started from.
    pub base: git2::Oid,
}

/// `nightshift/<run-id>`.
pub fn branch_name(run_id: &str) -> String {
    format!("nightshift/{run_id}")
}

fn valid_run_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !id.contains("..")
}

/// A commit message: a summary line, a blank line, `Key: value` trailers.
pub fn commit_message(summary: &str, trailers: &[(&str, String)]) -> String {
    let mut m = summary.trim().to_string();
    m.push_str("\n\n");
    for (k, v) in trailers {
        // A trailer is one line: newlines in a value would end it early.
        m.push_str(&format!("{k}: {}\n", v.replace('\n', " ")));
    }
    m
}

impl Workspace {
    /// Opens (or, resuming, reopens) the run's branch and worktree. `inside` is any
    /// path in the repository that holds the kernels; the worktree goes to `at`.
    pub fn open(inside: &Path, run_id: &str, at: &Path) -> Result<Workspace, VcsError> {
        if !valid_run_id(run_id) {
            return Err(VcsError::BadRunId(run_id.to_string()));
        }
        let user = Repository::discover(inside).map_err(|source| VcsError::NoRepository {
            path: inside.to_path_buf(),
            source,
        })?;
        let branch = branch_name(run_id);
        let wt_name = format!("nightshift-{run_id}");
        if !at.exists() {
            let head = user
                .head()
                .and_then(|h| h.peel_to_commit())
                .map_err(VcsError::NoHead)?;
            let b = match user.find_branch(&branch, BranchType::Local) {
                Ok(b) => b,
                Err(_) => user
                    .branch(&branch, &head, false)
                    .map_err(git("create the run's branch"))?,
            };
            if let Some(parent) = at.parent() {
                std::fs::create_dir_all(parent).map_err(|source| VcsError::Io {
                    action: "create".into(),
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            // A worktree registered by a run whose directory was deleted: prune it.
            if let Ok(old) = user.find_worktree(&wt_name) {
                let _ = old.prune(Some(
                    git2::WorktreePruneOptions::new()
                        .valid(true)
                        .working_tree(true),
                ));
            }
            let mut opts = WorktreeAddOptions::new();
            opts.reference(Some(b.get()));
            user.worktree(&wt_name, at, Some(&opts))
                .map_err(git("add the run's worktree"))?;
        }
        let repo = Repository::open(at).map_err(git("open the run's worktree"))?;
        let tip = user
            .find_branch(&branch, BranchType::Local)
            .ok()
            .and_then(|b| b.get().target())
            .ok_or_else(|| VcsError::Git {
                action: "find the run's branch".into(),
                source: git2::Error::from_str(&branch),
            })?;
        // Where the run forked from the user's history: below the run's own commits
        // (each says `Nightshift-Run: <id>`), whatever the user's HEAD is now (it may
        // have moved onto the run's branch, or back).
        let base = run_base(&user, tip, run_id)?;
        Ok(Workspace {
            repo,
            root: at.to_path_buf(),
            branch,
            base,
        })
    }

    /// Writes `files` (paths relative to the worktree root) and commits them on the
    /// run's branch. Returns the new commit's id.
    pub fn commit(
        &self,
        files: &[(PathBuf, String)],
        message: &str,
    ) -> Result<git2::Oid, VcsError> {
        let mut index = self
            .repo
            .index()
            .map_err(git("read the worktree's index"))?;
        for (rel, text) in files {
            let path = self.root.join(rel);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|source| VcsError::Io {
                    action: "create".into(),
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
            std::fs::write(&path, text).map_err(|source| VcsError::Io {
                action: "write".into(),
                path: path.clone(),
                source,
            })?;
            index.add_path(rel).map_err(git("stage a tuned file"))?;
        }
        index.write().map_err(git("write the worktree's index"))?;
        let tree = index
            .write_tree()
            .and_then(|id| self.repo.find_tree(id))
            .map_err(git("write the tree"))?;
        let parent = self
            .repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .map_err(git("read the run's head"))?;
        let sig = Signature::now("nightshift", "nightshift@localhost").map_err(git("sign"))?;
        self.repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &[&parent])
            .map_err(git("commit"))
    }

    /// Removes the lock files a process killed inside git left in the run's worktree
    /// (its index, its HEAD) and on the run's branch: without this a run killed
    /// mid-commit could never be resumed ("the index is locked"). Only for the
    /// holder of the run's own lock (`runs::lock_path`): no other process works in
    /// this worktree, so any lock found is stale. Returns the locks removed.
    pub fn clear_stale_locks(&self) -> Result<Vec<PathBuf>, VcsError> {
        let gitdir = self.repo.path();
        let candidates = [
            gitdir.join("index.lock"),
            gitdir.join("HEAD.lock"),
            self.repo
                .commondir()
                .join("refs/heads")
                .join(format!("{}.lock", self.branch)),
        ];
        let mut removed = Vec::new();
        for lock in candidates {
            match std::fs::remove_file(&lock) {
                Ok(()) => removed.push(lock),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(VcsError::Io {
                        action: "remove the stale lock".into(),
                        path: lock,
                        source,
                    })
                }
            }
        }
        Ok(removed)
    }

    /// Discards every uncommitted change in the worktree (a rejected variant).
    pub fn discard(&self) -> Result<(), VcsError> {
        let head = self
            .repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .map_err(git("read the run's head"))?;
        self.repo
            .reset(head.as_object(), ResetType::Hard, None)
            .map_err(git("reset the worktree"))?;
        let mut opts = StatusOptions::new();
        opts.include_untracked(true).recurse_untracked_dirs(true);
        let statuses = self.repo.statuses(Some(&mut opts)).map_err(git("status"))?;
        for s in statuses.iter() {
            if s.status().contains(Status::WT_NEW) {
                if let Some(p) = s.path() {
                    let _ = std::fs::remove_file(self.root.join(p));
                }
            }
        }
        Ok(())
    }

    /// Removes the worktree's directory and its registration; the branch and its
    /// commits stay. A resumed run adds the worktree again.
    pub fn remove(self) -> Result<(), VcsError> {
        let root = self.root.clone();
        // Registered as `nightshift-<run-id>` by `open`.
        let name = self.branch.replacen('/', "-", 1);
        let common = self.repo.commondir().to_path_buf();
        drop(self);
        std::fs::remove_dir_all(&root).map_err(|source| VcsError::Io {
            action: "remove the run's worktree".into(),
            path: root.clone(),
            source,
        })?;
        let repo = Repository::open(&common).map_err(git("open the repository"))?;
        if let Ok(wt) = repo.find_worktree(&name) {
            wt.prune(Some(git2::WorktreePruneOptions::new().valid(true)))
                .map_err(git("unregister the run's worktree"))?;
        }
        Ok(())
    }

    /// The text of `rel` (relative to the root) in the commit the run started from;
    /// None when that commit has no such file.
    pub fn read_at_base(&self, rel: &Path) -> Result<Option<String>, VcsError> {
        let commit = self
            .repo
            .find_commit(self.base)
            .map_err(git("read the commit the run started from"))?;
        let tree = commit
            .tree()
            .map_err(git("read the commit the run started from"))?;
        // `kernels/x/./k.cu` is `kernels/x/k.cu` to git; a path that leaves the root,
        // or a symbolic link, is not a file of the tree.
        let Some(clean) = normalized(rel) else {
            return Ok(None);
        };
        let Ok(entry) = tree.get_path(&clean) else {
            return Ok(None);
        };
        if !matches!(entry.filemode(), 0o100644 | 0o100755) {
            return Ok(None);
        }
        let blob = self
            .repo
            .find_blob(entry.id())
            .map_err(git("read a file of the commit the run started from"))?;
        Ok(Some(String::from_utf8_lossy(blob.content()).into_owned()))
    }

    /// Commits on the run's branch since it started, newest first: (id, message).
    pub fn log(&self) -> Result<Vec<(git2::Oid, String)>, VcsError> {
        let mut walk = self.repo.revwalk().map_err(git("walk the branch"))?;
        walk.push_head().map_err(git("walk the branch"))?;
        walk.hide(self.base).map_err(git("walk the branch"))?;
        let mut out = Vec::new();
        for id in walk {
            let id = id.map_err(git("walk the branch"))?;
            let c = self.repo.find_commit(id).map_err(git("read a commit"))?;
            out.push((id, c.message().unwrap_or("").to_string()));
        }
        Ok(out)
    }
}

/// The text of `rel` at the commit a run started from, and at each of the run's own
/// commits (newest first); empty when the repository has no branch for the run. What
/// a resume reads to tell the run's own rewrites of a kernel from a user's edits.
pub fn run_versions(
    inside: &Path,
    run_id: &str,
    rel: &Path,
) -> Result<(Option<String>, Vec<String>), VcsError> {
    let repo = Repository::discover(inside).map_err(|source| VcsError::NoRepository {
        path: inside.to_path_buf(),
        source,
    })?;
    let Some(tip) = repo
        .find_branch(&branch_name(run_id), BranchType::Local)
        .ok()
        .and_then(|b| b.get().target())
    else {
        return Ok((None, Vec::new()));
    };
    let base = run_base(&repo, tip, run_id)?;
    let text_at = |id: git2::Oid| -> Option<String> {
        let tree = repo.find_commit(id).ok()?.tree().ok()?;
        let entry = tree.get_path(&normalized(rel)?).ok()?;
        let blob = repo.find_blob(entry.id()).ok()?;
        Some(String::from_utf8_lossy(blob.content()).into_owned())
    };
    let mut run = Vec::new();
    let mut c = repo
        .find_commit(tip)
        .map_err(git("walk the run's branch"))?;
    while c.id() != base {
        run.extend(text_at(c.id()));
        match c.parent(0) {
            Ok(p) => c = p,
            Err(_) => break,
        }
    }
    Ok((text_at(base), run))
}

/// `rel` as git names a path: `./` dropped; None for one that leaves the root.
fn normalized(rel: &Path) -> Option<PathBuf> {
    let mut clean = PathBuf::new();
    for c in rel.components() {
        match c {
            std::path::Component::Normal(p) => clean.push(p),
            std::path::Component::CurDir => {}
            _ => return None,
        }
    }
    Some(clean)
}

/// The first commit below `tip`, along first parents, that is not one of the run's.
fn run_base(repo: &Repository, tip: git2::Oid, run_id: &str) -> Result<git2::Oid, VcsError> {
    let mark = format!("Nightshift-Run: {run_id}");
    let mut c = repo
        .find_commit(tip)
        .map_err(git("find where the run started"))?;
    while c
        .message()
        .is_some_and(|m| m.lines().any(|l| l.trim() == mark))
    {
        match c.parent(0) {
            Ok(p) => c = p,
            Err(_) => break,
        }
    }
    Ok(c.id())
}

/// The root of the working tree of the repository that holds `inside`.
pub fn repo_root(inside: &Path) -> Result<PathBuf, VcsError> {
    let repo = Repository::discover(inside).map_err(|source| VcsError::NoRepository {
        path: inside.to_path_buf(),
        source,
    })?;
    repo.workdir()
        .map(Path::to_path_buf)
        .ok_or_else(|| VcsError::Git {
            action: "find the working tree".into(),
            source: git2::Error::from_str("the repository is bare"),
        })
}

/// Where a run's worktree goes: inside the repository's git directory
/// (`.git/nightshift/worktrees/<run-id>`), so the user's working tree never shows it,
/// not even as an untracked directory.
pub fn worktree_dir(inside: &Path, run_id: &str) -> Result<PathBuf, VcsError> {
    let repo = Repository::discover(inside).map_err(|source| VcsError::NoRepository {
        path: inside.to_path_buf(),
        source,
    })?;
    Ok(repo
        .commondir()
        .join("nightshift")
        .join("worktrees")
        .join(run_id))
}

/// Paths under `under` (relative to the repository root) with uncommitted changes in
/// the user's tree: the run will not see them.
pub fn dirty(inside: &Path, under: &str) -> Result<Vec<String>, VcsError> {
    let repo = Repository::discover(inside).map_err(|source| VcsError::NoRepository {
        path: inside.to_path_buf(),
        source,
    })?;
    let mut opts = StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .pathspec(under);
    let statuses = repo.statuses(Some(&mut opts)).map_err(git("status"))?;
    Ok(statuses
        .iter()
        .filter(|s| !s.status().is_ignored())
        .filter_map(|s| s.path().map(str::to_string))
        .collect())
}

#[cfg(test)]
mod tests;
