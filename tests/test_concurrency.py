"""Many writers and a person editing the same sheet: nothing is lost, nothing is torn."""
import multiprocessing as mp
import random
import signal
import subprocess
import sys
import textwrap
import time

from runner.sheet import Table, open_sheet

WRITERS = 8
REPORTS = 50

# What each job wrapper does when it forwards metrics: one row write per batch.
WRITER = textwrap.dedent("""
    import sys
    from runner.sheet import open_sheet
    sheet, i = open_sheet(sys.argv[2]), int(sys.argv[1])
    for j in range(%d):
        assert sheet.update(f"r{i}", {f"s{j}": f"{i}-{j}"})
""" % REPORTS)


def person(path: str, stop_at: float, seed: int, out: "mp.Queue") -> None:
    """Inserts rows, edits notes and sorts the sheet, holding the lock like any tool would."""
    rng = random.Random(seed)
    sheet = open_sheet(path)
    inserted, deleted, edits, k = [], [], {}, 0
    while time.time() < stop_at:
        k += 1
        action = rng.choice(["insert", "insert", "edit", "edit", "delete", "sort"])

        def change(table: Table):
            if action == "insert":
                table.insert_row(rng.randrange(len(table) + 1),
                                 {"notes": f"human-{k}", "path_to_main": "x.py", "whether_to_run": "0"})
                return ("insert", f"human-{k}")
            if action == "edit":
                row = rng.choice(table.rows)
                key = row.get("run_id") or row.get("notes")
                row.set("notes", f"edit-{k}, \"quoted\"\nline")
                return ("edit", key)
            if action == "delete":
                mine = [r for r in table.rows if r.get("notes") in inserted]
                if mine:
                    victim = rng.choice(mine)
                    table.delete_row(victim)
                    return ("delete", victim.get("notes"))
                return ("none", None)
            table.sort_rows(key=lambda r: rng.random())
            return ("sort", None)

        kind, key = sheet.transact(change)
        if kind == "insert":
            inserted.append(key)
        elif kind == "delete":
            inserted.remove(key)
            deleted.append(key)
        elif kind == "edit":
            edits[key] = f"edit-{k}, \"quoted\"\nline"
            if key in inserted:
                inserted.remove(key)
                inserted.append(edits[key])
        time.sleep(0.005)
    out.put((inserted, deleted, edits))


def test_concurrent_reports_and_a_person_editing_lose_nothing(tmp_path):
    path = str(tmp_path / "sheet.csv")
    lines = ["path_to_main,path_to_default_config,whether_to_run,run_id,notes"]
    lines += [f"s.py,c.yaml,1,r{i},job {i}" for i in range(WRITERS)]
    lines += [f"s.py,c.yaml,0,,human row {i}" for i in range(5)]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    procs = []
    for i in range(WRITERS):
        procs.append(subprocess.Popen([sys.executable, str(script), str(i), path]))
    queue = mp.Queue()
    editor = mp.get_context("fork").Process(target=person, args=(path, time.time() + 4, 1, queue))
    editor.start()
    for p in procs:
        assert p.wait(120) == 0
    inserted, deleted, edits = queue.get(timeout=60)
    editor.join(30)

    table = open_sheet(path).read()
    by_id = {r.get("run_id"): r for r in table.rows if r.get("run_id")}
    lost = [(i, j) for i in range(WRITERS) for j in range(REPORTS)
            if by_id[f"r{i}"].get(f"s{j}") != f"{i}-{j}"]
    assert lost == [], f"{len(lost)} lost metric writes"
    notes = [r.get("notes") for r in table.rows]
    for key, value in edits.items():
        if key in by_id:
            assert by_id[key].get("notes") == value
    for note in inserted:
        assert note in notes, f"a person's inserted row {note!r} was lost"
    for note in deleted:
        assert note not in notes, f"a row the person deleted ({note!r}) came back"
    assert len(inserted) > 0 and len(edits) > 0 and len(deleted) > 0
    assert len(table) == WRITERS + 5 + len(inserted)


KILLED_WRITER = textwrap.dedent("""
    import sys, itertools
    from runner.sheet import open_sheet
    sheet = open_sheet(sys.argv[1])
    print("ready", flush=True)
    for k in itertools.count():
        sheet.update_many({f"r{i}": {"metric": f"v{k}", f"col{k % 7}": "x" * (k % 50)} for i in range(0, 3000, 7)})
""")


def test_writer_killed_mid_write_never_leaves_a_torn_sheet(tmp_path):
    path = str(tmp_path / "big.csv")
    rows = [f"s.py,c.yaml,1,r{i},\"note, {i}\"" for i in range(3000)]
    with open(path, "w") as f:
        f.write("path_to_main,path_to_default_config,whether_to_run,run_id,notes\n" + "\n".join(rows) + "\n")
    script = tmp_path / "w.py"
    script.write_text(KILLED_WRITER)
    rng = random.Random(0)
    for _attempt in range(15):
        proc = subprocess.Popen([sys.executable, str(script), path], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        table = open_sheet(path).read()
        assert len(table) == 3000
        assert table.header[:5] == ["path_to_main", "path_to_default_config", "whether_to_run", "run_id", "notes"]
        assert table.rows[-1].get("notes") == "note, 2999"
        assert all(r.get("run_id") == f"r{i}" for i, r in enumerate(table.rows))
