#!/usr/bin/env bash
# git under kalloc: init a repository, add a deterministic tree of ~2000
# files in nested directories, commit (fixed author/committer and dates, so
# commit ids are reproducible), make a second commit with edits, deletions
# and renames, then log --stat, diff, grep, blame, archive, gc, fsck and
# rev-list.  Every git process (and its helpers: pack-objects, index-pack,
# ...) runs under kalloc.  stdout must be the same as with the system
# allocator.
#   git.sh /path/to/libkalloc.so
. "$(dirname "$0")/common.sh" "$1"

command -v git >/dev/null || { echo "FAIL: git not found (tests/deps.sh installs it)" >&2; exit 1; }

# The file tree is generated once, outside the comparison, with the system
# allocator: the test is about git.
/usr/bin/python3 - "$WORK/template" <<'PY'
import os, sys, random
root = sys.argv[1]
rnd = random.Random(2024)
words = ["alloc", "free", "slab", "buddy", "zone", "page", "cache", "thread",
         "lock", "list", "node", "order", "size", "class", "magazine", "arena"]
n = 0
for top in range(8):
    for sub in range(10):
        d = os.path.join(root, "dir%02d" % top, "sub%02d" % sub)
        os.makedirs(d)
        for f in range(25):
            n += 1
            lines = []
            for l in range(rnd.randint(5, 120)):
                lines.append(" ".join(rnd.choice(words) for _ in range(rnd.randint(1, 12))) + " %d" % l)
            with open(os.path.join(d, "file%03d.txt" % f), "w") as fh:
                fh.write("\n".join(lines) + "\n")
with open(os.path.join(root, "README"), "w") as fh:
    fh.write("generated tree, %d files\n" % n)
PY

git_work() {
  export HOME="$PWD/home" XDG_CONFIG_HOME="$PWD/home/.config"
  mkdir -p "$HOME"
  export GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0 GIT_PAGER=cat PAGER=cat
  export GIT_AUTHOR_NAME="Kalloc Test" GIT_AUTHOR_EMAIL="test@kalloc.invalid"
  export GIT_COMMITTER_NAME="Kalloc Test" GIT_COMMITTER_EMAIL="test@kalloc.invalid"
  export GIT_AUTHOR_DATE="2024-01-01T00:00:00Z" GIT_COMMITTER_DATE="2024-01-01T00:00:00Z"

  git init -q -b main repo
  cd repo
  git config core.autocrlf false
  git config gc.auto 0
  cp -r "$WORK/template/." .
  git add -A
  git commit -q -m "Initial tree"
  echo "files: $(git ls-files | wc -l)"

  # Second commit: edits, deletions, renames, new files.
  for f in dir0*/sub0[0-4]/file00[0-9].txt; do echo "edited $f" >>"$f"; done
  git rm -q dir07/sub09/file0*.txt
  git mv dir06/sub08 dir06/moved08
  mkdir -p newdir
  for i in $(seq 1 50); do printf 'new file %d\n' "$i" >"newdir/n$i.txt"; done
  git add -A
  export GIT_AUTHOR_DATE="2024-01-02T12:00:00Z" GIT_COMMITTER_DATE="2024-01-02T12:00:00Z"
  git commit -q -m "Edit, delete, rename"

  # A few branch commits and a merge.
  git checkout -q -b side HEAD~1
  echo "side change" >>README
  git commit -q -am "Side change"
  git checkout -q main
  export GIT_AUTHOR_DATE="2024-01-03T00:00:00Z" GIT_COMMITTER_DATE="2024-01-03T00:00:00Z"
  git merge -q --no-edit side

  echo "== log --stat"; git log --stat --format='%H %an %ad %s' --date=iso-strict
  echo "== rev-list"; git rev-list --all --objects | sort | sha256sum
  echo "== diff"; git diff --stat HEAD~2 HEAD; git diff HEAD~2 HEAD | sha256sum
  echo "== grep"; git grep -c magazine HEAD -- dir03 | sed -n 1,20p
  echo "== blame"; git blame -s dir00/sub00/file000.txt | tail -3
  echo "== archive"; git archive --format=tar HEAD | sha256sum
  echo "== gc"; git gc --quiet --aggressive 2>&1
  git count-objects -v | grep -E '^(count|packs|prune-packable|garbage):'
  echo "== fsck"; git fsck --full --strict 2>&1
  echo "== verify-pack"; git verify-pack -s .git/objects/pack/*.idx | grep -c -E '^(non delta|chain length)' || true
  echo "== after gc"; git log --format='%H %s' | cat; git ls-tree -r HEAD | sha256sum
  git status --porcelain
}

run_workload git git_work && compare_output git
finish
