"""Reader tests for :mod:`contract.schema` and :mod:`contract.readers`: every format, every container, normalization, every bad input.

Each bad-input test asserts that the message names the file, the line or record, and the problem.
"""

from __future__ import annotations

import csv
import doctest
import json
import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import contract.schema as schema
from contract.io import sha256_file, write_jsonl
from contract.readers import container_kind, read_examples, read_pools, write_rejects
from contract.schema import DataError, example_id, normalize_text

REPO = Path(__file__).resolve().parent.parent
POOL = REPO / "data" / "sample-pool"
EVAL_PROMPTS = REPO / "data" / "eval-prompts" / "prompts.jsonl"

Q, A = "What is 2 + 2?", "2 + 2 is 4."
QA = [{"role": "user", "content": Q}, {"role": "assistant", "content": A}]
QA_ID = example_id(QA)


def jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def one(path, **kwargs) -> dict:
    result = read_examples(path, **kwargs)
    assert len(result.examples) == 1 and not result.rejects, result
    return result.examples[0]


def error_of(path, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        read_examples(path, **kwargs)
    return info.value


# --------------------------------------------------------------------------- record formats

FORMAT_CASES = {
    "messages": {"messages": QA},
    "sharegpt": {"conversations": [{"from": "human", "value": Q}, {"from": "gpt", "value": A}]},
    "alpaca": {"instruction": Q, "output": A},
    "alpaca-empty-input": {"instruction": Q, "input": "", "output": A},
    "lima": {"conversations": [Q, A]},
    "prompt-response": {"prompt": Q, "response": A},
    "prompt-completion": {"prompt": Q, "completion": A},
}


@pytest.mark.parametrize("case", FORMAT_CASES)
def test_every_format_gives_the_same_example(tmp_path, case):
    ex = one(jsonl(tmp_path / "pool.jsonl", [FORMAT_CASES[case]]))
    assert ex == {"id": QA_ID, "messages": QA, "source": "pool", "meta": {}}


def test_alpaca_with_input_joins_instruction_and_input(tmp_path):
    ex = one(jsonl(tmp_path / "a.jsonl", [{"instruction": "Translate to French.", "input": "Good morning",
                                           "output": "Bonjour"}]))
    assert ex["messages"][0] == {"role": "user", "content": "Translate to French.\n\nGood morning"}
    same = one(jsonl(tmp_path / "b.jsonl", [{"messages": [
        {"role": "user", "content": "Translate to French.\n\nGood morning"},
        {"role": "assistant", "content": "Bonjour"}]}]))
    assert same["id"] == ex["id"]


def test_lima_multi_turn_alternates_user_and_assistant(tmp_path):
    ex = one(jsonl(tmp_path / "lima.jsonl", [{"conversations": ["q1", "a1", "q2", "a2"]}]))
    assert [(t["role"], t["content"]) for t in ex["messages"]] == [
        ("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2")]


def test_lima_ending_on_a_user_turn_is_rejected(tmp_path):
    err = error_of(jsonl(tmp_path / "lima.jsonl", [{"conversations": ["q1", "a1", "q2"]}]))
    assert str(err).startswith(f"{tmp_path / 'lima.jsonl'}:1: ")
    assert "does not end with an assistant answer" in str(err)


def test_prompt_response_with_a_field_mapping(tmp_path):
    path = jsonl(tmp_path / "qa.jsonl", [{"question": Q, "answer": A, "persona": "Be brief.", "votes": 3}])
    ex = one(path, mapping={"prompt": "question", "response": "answer", "system": "persona"})
    assert ex["messages"] == [{"role": "system", "content": "Be brief."}, *QA]
    assert ex["meta"] == {"votes": 3}  # mapped fields are not repeated in meta
    with pytest.raises(DataError, match="unknown format"):  # without the mapping the shape is unknown
        read_examples(path)


def test_forced_format(tmp_path):
    path = jsonl(tmp_path / "p.jsonl", [{"prompt": Q, "response": A}])
    assert one(path, fmt="prompt_response")["id"] == QA_ID
    with pytest.raises(ValueError, match="unknown format 'yaml'"):
        read_examples(path, fmt="yaml")


def test_forced_format_without_its_field_is_a_data_error_naming_the_field(tmp_path):
    path = jsonl(tmp_path / "p.jsonl", [{"prompt": Q, "response": A}])
    err = error_of(path, fmt="lima")
    assert str(err) == f"{path}:1: lima record without field 'conversations' (fields: prompt, response)"
    skipped = read_examples(path, fmt="messages", on_error="skip")
    assert [r.error for r in skipped.rejects] == ["messages record without field 'messages' (fields: prompt, response)"]
    err = error_of(path, mapping={"prompt": "prompt", "response": "answer"}, fmt="prompt_response")
    assert "prompt_response record without field 'answer'" in str(err)
    path = jsonl(tmp_path / "c.jsonl", [{"conversations": "q then a"}])
    assert str(error_of(path, fmt="lima")) == f"{path}:1: conversations is str, expected a list"
    assert str(error_of(path, fmt="sharegpt")) == f"{path}:1: conversations is str, expected a list"


# --------------------------------------------------------------------------- containers

def write_parquet(path: Path, records: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def test_json_list_and_object_with_a_list(tmp_path):
    (tmp_path / "list.json").write_text(json.dumps([{"messages": QA}]), encoding="utf-8")
    for key in ("data", "examples", "train", "rows"):
        (tmp_path / f"{key}.json").write_text(json.dumps({key: [{"prompt": Q, "response": A}]}), encoding="utf-8")
    (tmp_path / "single.json").write_text(json.dumps({"instruction": Q, "output": A}), encoding="utf-8")
    for name in ("list", "data", "examples", "train", "rows", "single"):
        assert one(tmp_path / f"{name}.json")["id"] == QA_ID, name


def test_json_that_is_not_a_list_of_records(tmp_path):
    path = tmp_path / "n.json"
    path.write_text("42", encoding="utf-8")
    assert str(error_of(path)) == f"{path}: expected a JSON list of records (or an object with a list under 'data')"


def test_parquet_prompt_response_with_null_columns(tmp_path):
    path = write_parquet(tmp_path / "forum.parquet", [
        {"prompt": Q, "response": A, "system": None, "source": "forum", "note": None},
        {"prompt": "Hi", "response": "Hello!", "system": "Be kind.", "source": "forum", "note": "greeting"},
    ])
    result = read_examples(path)
    first, second = result.examples
    assert first == {"id": QA_ID, "messages": QA, "source": "forum", "meta": {}}  # nulls are absent, not meta
    assert second["messages"][0] == {"role": "system", "content": "Be kind."}
    assert second["meta"] == {"note": "greeting"}


def test_parquet_messages_column(tmp_path):
    path = write_parquet(tmp_path / "m.parquet", [{"messages": QA, "meta": {"k": "v"}}])
    ex = one(path)
    assert ex["id"] == QA_ID and ex["meta"] == {"k": "v"}


def test_parquet_meta_as_json_text(tmp_path):
    path = write_parquet(tmp_path / "m.parquet", [{"prompt": Q, "response": A, "meta": '{"k": 1}'}])
    assert one(path)["meta"] == {"k": 1}


def test_csv_alpaca_and_json_encoded_columns(tmp_path):
    path = tmp_path / "pool.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["instruction", "input", "output", "meta"])
        w.writerow([Q, "", A, '{"origin": "csv"}'])
        w.writerow(["Translate.", "Good\nmorning", "Bonjour", ""])
    first, second = read_examples(path).examples
    assert first == {"id": QA_ID, "messages": QA, "source": "pool", "meta": {"origin": "csv"}}
    assert second["messages"][0]["content"] == "Translate.\n\nGood\nmorning"

    path = tmp_path / "messages.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["messages", "source"])
        w.writerow([json.dumps(QA), "csv-messages"])
    path2 = tmp_path / "lima.csv"
    with open(path2, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["conversations"])
        w.writerow([json.dumps([Q, A])])
    assert one(path)["id"] == one(path2)["id"] == QA_ID
    assert one(path)["source"] == "csv-messages"


def test_csv_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffprompt,response\n".encode() + f'"{Q}","{A}"\n'.encode())
    assert one(path)["id"] == QA_ID


def test_jsonl_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"prompt": Q, "response": A}).encode() + b"\n")
    assert one(path)["id"] == QA_ID


@pytest.fixture
def datasets_cache(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    return datasets


def test_save_to_disk_dataset_and_dataset_dict(tmp_path, datasets_cache):
    ds = datasets_cache.Dataset.from_list([{"prompt": Q, "response": A}, {"prompt": "Hi", "response": "Hello!"}])
    ds.save_to_disk(str(tmp_path / "ds"))
    assert container_kind(tmp_path / "ds") == "disk"
    result = read_examples(tmp_path / "ds")
    assert [e["id"] for e in result.examples][0] == QA_ID and len(result.examples) == 2
    assert result.examples[0]["source"] == "ds"

    datasets_cache.DatasetDict({"train": ds, "test": ds.select([1])}).save_to_disk(str(tmp_path / "dd"))
    assert len(read_examples(tmp_path / "dd").examples) == 2
    assert read_examples(tmp_path / "dd", split="test").examples[0]["messages"][0]["content"] == "Hi"
    err = error_of(tmp_path / "dd", split="validation")
    assert str(err) == f"{tmp_path / 'dd'}: split 'validation' not found (splits: train, test)"


def test_bad_record_in_a_disk_dataset_names_the_folder_and_record(tmp_path, datasets_cache):
    ds = datasets_cache.Dataset.from_list([{"prompt": Q, "response": A}, {"prompt": "Hi", "response": ""}])
    ds.save_to_disk(str(tmp_path / "ds"))
    err = error_of(tmp_path / "ds")
    assert str(err) == f"{tmp_path / 'ds'}#2: empty assistant answer (turn 1)"  # the 2nd record, counted from 1


def test_hub_id_goes_through_load_dataset(tmp_path, datasets_cache):
    # the Hub is unreachable here; the same code path loads a local data folder given as hf:<path>
    folder = tmp_path / "hub-like"
    folder.mkdir()
    jsonl(folder / "train.jsonl", [{"prompt": Q, "response": A}, {"prompt": "Hi", "response": ""}])
    assert container_kind(f"hf:{folder}") == "hub"
    result = read_examples(f"hf:{folder}", on_error="skip")
    assert [e["id"] for e in result.examples] == [QA_ID]
    assert [(r.path, r.record, r.error) for r in result.rejects] == [
        (f"hf:{folder}", 2, "empty assistant answer (turn 1)")]


def test_bare_hub_id_calls_load_dataset_with_the_split(monkeypatch, datasets_cache):
    calls = []

    def fake_load_dataset(name, split):
        calls.append((name, split))
        return [{"prompt": Q, "response": A}]

    monkeypatch.setattr(datasets_cache, "load_dataset", fake_load_dataset)
    assert container_kind("someone/some-pool") == "hub"
    ex = one("someone/some-pool", split="dev")
    assert calls == [("someone/some-pool", "dev")]
    assert ex["id"] == QA_ID and ex["source"] == "someone/some-pool"


def test_unreachable_hub_id_names_the_dataset(datasets_cache):
    with pytest.raises(DataError) as info:
        read_examples("hf:no-such-owner/no-such-dataset")
    assert str(info.value).startswith("could not load Hub dataset 'no-such-owner/no-such-dataset' (split 'train'): ")


# --------------------------------------------------------------------------- normalization

def test_role_aliases(tmp_path):
    aliases = [("human", "gpt"), ("Human", "GPT"), (" user ", "bot"), ("prompter", "model"), ("question", "answer"),
               ("instruction", "response"), ("user", "chatgpt")]
    path = jsonl(tmp_path / "roles.jsonl",
                 [{"messages": [{"role": u, "content": Q}, {"role": a, "content": A}]} for u, a in aliases])
    result = read_examples(path)
    assert len(result.examples) == 1 and result.duplicates == len(aliases) - 1
    assert result.examples[0]["messages"] == QA
    sharegpt = jsonl(tmp_path / "sg.jsonl", [{"conversations": [{"from": "HUMAN", "value": Q},
                                                                {"role": "assistant", "value": A}]}])
    assert one(sharegpt)["id"] == QA_ID


def test_whitespace_and_unicode_normalization(tmp_path):
    messy = [{"role": "user", "content": "  What is 2 + 2?\r\n"},
             {"role": "assistant", "content": "2 + 2   \r\n\r\n\r\n\r\nis 4.  \t"}]
    ex = one(jsonl(tmp_path / "w.jsonl", [{"messages": messy}]))
    assert ex["messages"][1]["content"] == "2 + 2\n\nis 4."
    assert normalize_text("a  \nb") == "a\nb"
    composed, decomposed = "caf\u00e9", unicodedata.normalize("NFD", "caf\u00e9")
    assert composed != decomposed
    ids = {one(jsonl(tmp_path / f"{i}.jsonl", [{"prompt": s, "response": A}]))["id"]
           for i, s in enumerate((composed, decomposed))}
    assert len(ids) == 1


def test_system_prompts_are_kept_in_every_format(tmp_path):
    sys_qa = [{"role": "system", "content": "Be brief."}, *QA]
    records = [
        {"messages": sys_qa},
        {"system": "Be brief.", "messages": QA},
        {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": Q},
                           {"from": "gpt", "value": A}]},
        {"system": "Be brief.", "conversations": [{"from": "human", "value": Q}, {"from": "gpt", "value": A}]},
        {"system": "Be brief.", "conversations": [Q, A]},
        {"system": "Be brief.", "instruction": Q, "output": A},
        {"system": "Be brief.", "prompt": Q, "response": A},
    ]
    result = read_examples(jsonl(tmp_path / "sys.jsonl", records))
    assert len(result.examples) == 1 and result.duplicates == len(records) - 1
    assert result.examples[0]["messages"] == sys_qa
    assert result.examples[0]["id"] != QA_ID  # the system prompt is part of the content


def test_empty_system_prompt_is_dropped(tmp_path):
    ex = one(jsonl(tmp_path / "s.jsonl", [{"messages": [{"role": "system", "content": "  "}, *QA]}]))
    assert ex["messages"] == QA and ex["id"] == QA_ID


@pytest.mark.parametrize("record, problem", [
    ({"messages": [QA[0], {"role": "system", "content": "late"}, QA[1]]},
     "turn 1 is a system prompt; it may only be the first turn"),
    ({"system": "twice", "messages": [{"role": "system", "content": "once"}, *QA]},
     "both a system field and a system turn: give the system prompt once"),
    ({"system": ["not", "text"], "conversations": [Q, A]}, "system field is list, expected text"),
])
def test_misplaced_system_prompts(tmp_path, record, problem):
    path = jsonl(tmp_path / "s.jsonl", [record])
    assert str(error_of(path)) == f"{path}:1: {problem}"


def test_same_example_from_two_files_and_formats_is_one_example(tmp_path):
    a = jsonl(tmp_path / "a.jsonl", [{"messages": QA, "source": "first"}])
    b = write_parquet(tmp_path / "b.parquet", [{"prompt": Q + "  ", "response": "\n" + A, "source": "second"},
                                               {"prompt": Q, "response": A + "!"}])
    result = read_pools([a, b])
    assert [e["source"] for e in result.examples] == ["first", "b"]  # the first file read wins
    assert result.duplicates == 1
    assert result.examples[0]["id"] == QA_ID != result.examples[1]["id"]


def test_ids_differ_for_different_content():
    user_only_changed = [{"role": "user", "content": Q + " "}, QA[1]]
    assert example_id(schema.normalize_messages(user_only_changed)) == QA_ID  # whitespace is not content
    assert example_id([QA[0], {"role": "assistant", "content": "4"}]) != QA_ID
    assert example_id([{"role": "system", "content": Q}, QA[1]]) != example_id(QA)  # roles are content
    swapped = [{"role": "user", "content": A}, {"role": "assistant", "content": Q}]
    assert example_id(swapped) != QA_ID


def test_source_and_meta(tmp_path):
    path = jsonl(tmp_path / "forum-dump.jsonl", [
        {"prompt": Q, "response": A, "url": "https://example.org/q/1", "score": 12, "tags": ["a"], "extra": None},
        {"prompt": "Hi", "response": "Hello!", "source": "handwritten", "meta": {"score": 99}, "score": 1},
    ])
    first, second = read_examples(path).examples
    assert first["source"] == "forum-dump"
    assert first["meta"] == {"url": "https://example.org/q/1", "score": 12}  # scalars only; null is absent
    assert second["source"] == "handwritten"
    assert second["meta"] == {"score": 99}  # meta wins over a same-named field
    assert {e["source"] for e in read_examples(path, source_name="forum").examples} == {"forum", "handwritten"}


def test_record_id_field_names_the_record_in_errors(tmp_path):
    path = jsonl(tmp_path / "ids.jsonl", [{"id": "q-17", "prompt": Q, "response": " "}])
    assert str(error_of(path)) == f"{path}:1 record q-17: empty assistant answer (turn 1)"


# --------------------------------------------------------------------------- bad input: one problem each

def test_malformed_json_line(tmp_path):
    path = jsonl(tmp_path / "bad.jsonl", [{"messages": QA}, '{"messages": [{"role": "user", "content": "cut'])
    err = error_of(path)
    assert str(err).startswith(f"{path}:2: malformed JSON at column ")
    assert (err.path, err.line) == (str(path), 2)
    assert "Unterminated string" in err.problem


def test_malformed_json_file_names_the_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n {"prompt": "q", "response": "a"},\n {"prompt": "q2" "response": "a2"}\n]\n', encoding="utf-8")
    err = error_of(path)
    assert str(err) == f"{path}:3: malformed JSON at column 18: Expecting ',' delimiter"


@pytest.mark.parametrize("record", [
    {"messages": [{"role": "user", "content": Q}]},
    {"conversations": [{"from": "human", "value": Q}]},
])
def test_no_assistant_answer(tmp_path, record):
    path = jsonl(tmp_path / "noanswer.jsonl", [{"messages": QA}, record])
    assert str(error_of(path)) == f"{path}:2: no assistant answer"


@pytest.mark.parametrize("record", [
    {"messages": [QA[0], {"role": "assistant", "content": ""}]},
    {"messages": [QA[0], {"role": "assistant", "content": None}]},
    {"conversations": [Q, " \n\t "]},
    {"instruction": Q, "output": ""},
    {"prompt": Q, "response": None},
])
def test_empty_answer(tmp_path, record):
    path = jsonl(tmp_path / "empty.jsonl", [record])
    assert str(error_of(path)) == f"{path}:1: empty assistant answer (turn 1)"


def test_empty_user_turn(tmp_path):
    path = jsonl(tmp_path / "e.jsonl", [{"instruction": "", "output": A}])
    assert str(error_of(path)) == f"{path}:1: empty user turn (turn 0)"


@pytest.mark.parametrize("record", [
    {"messages": [{"role": "narrator", "content": Q}, QA[1]]},
    {"conversations": [{"from": "narrator", "value": Q}, {"from": "gpt", "value": A}]},
])
def test_unknown_role(tmp_path, record):
    path = jsonl(tmp_path / "roles.jsonl", [record])
    err = error_of(path)
    assert str(err).startswith(f"{path}:1: unknown role 'narrator' (expected one of system, user, assistant")


def test_content_that_is_not_text(tmp_path):
    path = jsonl(tmp_path / "c.jsonl", [{"messages": [QA[0], {"role": "assistant", "content": 4}]}])
    assert str(error_of(path)) == f"{path}:1: turn 1 (assistant) content is int, expected text"


@pytest.mark.parametrize("name, content", [
    ("empty.jsonl", b""), ("empty.json", b""), ("empty.csv", b""), ("empty.parquet", b""),
])
def test_empty_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    assert str(error_of(path)) == f"{path}: empty file"


@pytest.mark.parametrize("name, content", [
    ("blank.jsonl", b"\n  \n\n"), ("list.json", b"[]"), ("header.csv", b"prompt,response\n"),
])
def test_file_without_records(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    assert str(error_of(path)) == f"{path}: empty file (no records)"


def test_empty_parquet_table(tmp_path):
    path = tmp_path / "none.parquet"
    pq.write_table(pa.table({"prompt": pa.array([], pa.string()), "response": pa.array([], pa.string())}), path)
    assert str(error_of(path)) == f"{path}: empty file (no records)"


def test_unknown_record_shape(tmp_path):
    path = jsonl(tmp_path / "shape.jsonl", [{"text": "just text", "score": 1}])
    err = error_of(path)
    assert str(err).startswith(f"{path}:1: unknown format (fields: score, text); expected messages, conversations")


def test_record_that_is_not_an_object(tmp_path):
    path = jsonl(tmp_path / "list.jsonl", [[Q, A]])
    assert str(error_of(path)) == f"{path}:1: record is list, expected a JSON object"


@pytest.mark.parametrize("name", ["pool.txt", "pool.jsonl.gz", "pool"])
def test_unknown_file_suffix(tmp_path, name):
    path = tmp_path / name
    path.write_text(json.dumps({"messages": QA}) + "\n", encoding="utf-8")
    err = error_of(path)
    suffix = Path(name).suffix or "(no suffix)"
    assert str(err).startswith(f"{path}: unknown file type '{suffix}': expected .csv, .json, .jsonl, ")


def test_missing_file_is_not_mistaken_for_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert str(error_of("data/typo.jsonl")) == "data/typo.jsonl: no such file or folder"
    assert str(error_of(tmp_path / "nowhere" / "x.csv")) == f"{tmp_path / 'nowhere' / 'x.csv'}: no such file or folder"


def test_folder_that_is_not_a_saved_dataset(tmp_path):
    (tmp_path / "folder").mkdir()
    err = error_of(tmp_path / "folder")
    assert str(err).startswith(f"{tmp_path / 'folder'}: folder is neither a curation export (manifest.json and "
                               "train.jsonl) nor a `datasets` save_to_disk folder")


def test_a_curation_export_folder_reads_as_its_splits(tmp_path):
    """data/<name>/ as `curation export` writes it: the folder stands for its train.jsonl (or another split's
    file); errors name the file and line; a split it lacks is an error listing those it has."""
    folder = tmp_path / "my-lima"
    folder.mkdir()

    def rec(answer):
        return json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": answer}]})

    (folder / "train.jsonl").write_text(rec("from train") + "\n{not json\n")
    (folder / "dev.jsonl").write_text(rec("from dev") + "\n")
    (folder / "manifest.json").write_text("{}")
    assert container_kind(folder) == "jsonl"
    train = read_examples(folder, on_error="skip")
    assert [e["messages"][1]["content"] for e in train.examples] == ["from train"]
    assert [(r.path, r.line) for r in train.rejects] == [(str(folder / "train.jsonl"), 2)]
    assert [e["messages"][1]["content"] for e in read_examples(folder, split="dev").examples] == ["from dev"]
    with pytest.raises(DataError, match=r"split 'test' not found in this curation export \(splits: dev, train\)"):
        read_examples(folder, split="test")


def test_bytes_that_are_not_utf8_in_jsonl(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps({"messages": QA}).encode() + b'\n{"prompt": "caf\xe9", "response": "x"}\n')
    err = error_of(path)
    assert str(err).startswith(f"{path}:2: bytes that are not UTF-8 at byte 15 of the line")
    result = read_examples(path, on_error="skip")
    assert len(result.examples) == 1 and result.rejects[0].raw == b'{"prompt": "caf\xe9", "response": "x"}\n'


@pytest.mark.parametrize("name, content, line", [
    ("latin1.json", b'[\n{"prompt": "caf\xe9", "response": "x"}\n]', 2),
    ("latin1.csv", b"prompt,response\nq,a\ncaf\xe9,x\n", 3),
])
def test_bytes_that_are_not_utf8_in_whole_file_containers(tmp_path, name, content, line):
    path = tmp_path / name
    path.write_bytes(content)
    assert str(error_of(path)).startswith(f"{path}:{line}: bytes that are not UTF-8 at byte ")


def test_bad_record_in_a_json_list_names_the_record(tmp_path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps([{"prompt": Q, "response": A}, {"prompt": Q, "response": ""}]), encoding="utf-8")
    assert str(error_of(path)) == f"{path}#2: empty assistant answer (turn 1)"


def test_bad_record_in_parquet_names_the_record(tmp_path):
    path = write_parquet(tmp_path / "p.parquet", [{"prompt": Q, "response": A}, {"prompt": Q, "response": None}])
    assert str(error_of(path)) == f"{path}#2: empty assistant answer (turn 1)"


def test_file_that_is_not_parquet(tmp_path):
    path = tmp_path / "fake.parquet"
    path.write_text("prompt,response\n", encoding="utf-8")
    assert str(error_of(path)).startswith(f"{path}: not a readable Parquet file: ")


def test_csv_errors_name_the_line_where_the_record_starts(tmp_path):
    path = tmp_path / "multi.csv"
    path.write_text('prompt,response\nq,a\n"three\nline\nprompt",\nq2,a2,EXTRA\nq3,"{not json"\n', encoding="utf-8")
    result = read_examples(path, on_error="skip")
    assert len(result.examples) == 2  # the last row: a response starting with "{" is only decoded for JSON columns
    assert [(r.line, r.error) for r in result.rejects] == [
        (3, "empty assistant answer (turn 1)"),
        (6, "row has 3 fields, the header names 2"),
    ]
    bad_json = tmp_path / "bad-json.csv"
    bad_json.write_text('messages\n"[{""role"": ""user"""\n', encoding="utf-8")
    assert str(error_of(bad_json)).startswith(f"{bad_json}:2: column 'messages' holds malformed JSON: ")


@pytest.mark.parametrize("meta, problem", [
    ("not json", "meta is text but not a JSON object (Expecting value)"),
    (["a", "list"], "meta is list, expected an object"),
    (7, "meta is int, expected an object"),
])
def test_meta_that_is_not_an_object(tmp_path, meta, problem):
    path = jsonl(tmp_path / "meta.jsonl", [{"prompt": Q, "response": A, "meta": meta}])
    assert str(error_of(path)) == f"{path}:1: {problem}"


# --------------------------------------------------------------------------- on_error="skip", rejects, counts

def test_skip_collects_every_reject_with_its_reason_and_counts_add_up(tmp_path):
    records = [
        {"messages": QA},                                           # 1 ok
        '{"messages": [',                                           # 2 malformed
        {"messages": [QA[0]]},                                      # 3 no answer
        {"conversations": [Q, ""]},                                 # 4 empty answer
        {"messages": [{"role": "narrator", "content": Q}, QA[1]]},  # 5 unknown role
        {"text": "?"},                                              # 6 unknown shape
        {"prompt": Q, "response": A},                               # 7 duplicate of 1
        "",                                                         # blank line: not a record
        {"instruction": "Hi", "output": "Hello!"},                  # 9 ok
    ]
    path = jsonl(tmp_path / "mixed.jsonl", records)
    result = read_examples(path, on_error="skip")
    assert len(result.examples) == 2 and result.duplicates == 1
    assert [(r.path, r.line) for r in result.rejects] == [(str(path), n) for n in (2, 3, 4, 5, 6)]
    reasons = [r.error for r in result.rejects]
    assert reasons[0].startswith("malformed JSON at column ")
    assert reasons[1:4] == ["no assistant answer", "empty assistant answer (turn 1)",
                            reasons[3]] and reasons[3].startswith("unknown role 'narrator'")
    assert reasons[4].startswith("unknown format (fields: text)")
    n_records = sum(1 for r in records if r != "")
    assert len(result.examples) + len(result.rejects) + result.duplicates == n_records  # nothing dropped silently

    out = tmp_path / "rejects.jsonl"
    assert write_rejects(out, result.rejects) == 5
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["path"], r["line"], r["error"]) for r in rows] == [(str(path), r.line, r.error) for r in result.rejects]
    assert rows[0]["raw"] == '{"messages": [\n'
    assert rows[1]["raw"] == {"messages": [QA[0]]}


def test_write_rejects_decodes_raw_bytes(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_bytes(b'{"prompt": "caf\xe9"}\n')
    result = read_examples(path, on_error="skip")
    write_rejects(tmp_path / "rejects.jsonl", result.rejects)
    row = json.loads((tmp_path / "rejects.jsonl").read_text(encoding="utf-8"))
    assert row["line"] == 1 and row["raw"] == '{"prompt": "caf\ufffd"}\n'


def test_raise_stops_at_the_first_bad_record(tmp_path):
    path = jsonl(tmp_path / "two.jsonl", [{"messages": [QA[0]]}, '{"broken'])
    assert error_of(path).line == 1


def test_on_error_must_be_raise_or_skip(tmp_path):
    with pytest.raises(ValueError, match="on_error must be 'raise' or 'skip'"):
        read_examples(jsonl(tmp_path / "x.jsonl", [{"messages": QA}]), on_error="ignore")


def test_read_pools_accumulates_rejects_and_duplicates_across_files(tmp_path):
    a = jsonl(tmp_path / "a.jsonl", [{"messages": QA}, {"prompt": Q}])
    b = jsonl(tmp_path / "b.jsonl", [{"prompt": Q, "response": A}, {"prompt": "Hi", "response": "Hello!"}])
    result = read_pools([a, b], on_error="skip")
    assert (len(result.examples), len(result.rejects), result.duplicates) == (2, 1, 1)
    assert result.rejects[0].path == str(a) and result.rejects[0].error.startswith("unknown format (fields: prompt)")
    assert result.counts_by_source() == {"a": 1, "b": 1}


def test_write_jsonl_is_atomic_and_counts(tmp_path):
    out = tmp_path / "sub" / "out.jsonl"
    assert write_jsonl(out, [{"a": "é"}, {"b": 2}]) == 2
    assert out.read_text(encoding="utf-8") == '{"a": "é"}\n{"b": 2}\n'
    assert not list(out.parent.glob("*.tmp"))
    assert len(sha256_file(out)) == 64


def test_doctests_in_the_module_pass():
    failed, attempted = doctest.testmod(schema, optionflags=doctest.ELLIPSIS)
    assert attempted >= 8 and failed == 0


# --------------------------------------------------------------------------- the shipped sample data

POOL_FILES = sorted(p for p in POOL.glob("*") if p.suffix in (".jsonl", ".json", ".csv", ".parquet"))


def test_sample_pool_reads_without_rejects_and_matches_its_readme():
    assert [p.name for p in POOL_FILES] == ["forum-answers.parquet", "handwritten.lima.jsonl",
                                            "pydoc-topics.messages.jsonl", "stdlib-functions.sharegpt.json",
                                            "stdlib-sessions.alpaca.csv", "tasks.alpaca.json"]
    result = read_pools(POOL_FILES)
    assert not result.rejects
    assert (len(result.examples), result.duplicates) == (312, 9)  # as data/README.md says
    assert result.counts_by_source() == {"forum-style": 32, "handwritten": 69, "pydoc-topics": 80,
                                         "stdlib-docstrings": 131}
    kinds: dict[str, int] = {}
    for ex in result.examples:
        kind = ex["meta"].get("quality_note", "none").split(":")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds == {"none": 271, "near-duplicate": 8, "refusal": 6, "boilerplate": 5, "first-person": 4,
                     "reference": 4, "too-short": 7, "non-english": 3, "contaminated": 4}
    assert sum(p.stat().st_size for p in POOL_FILES) < 2 * 1024 * 1024


def test_sample_pool_bad_file_demonstrates_skip_invalid(tmp_path):
    bad = POOL / "bad" / "invalid.jsonl"
    with pytest.raises(DataError, match=r"invalid\.jsonl:2: malformed JSON"):
        read_examples(bad)
    result = read_examples(bad, on_error="skip")
    assert len(result.examples) == 2
    assert [(r.line, r.error.split(" (")[0].split(" at ")[0]) for r in result.rejects] == [
        (2, "malformed JSON"), (3, "no assistant answer"), (4, "empty assistant answer"), (5, "unknown role 'narrator'"),
        (7, "unknown format"), (8, "bytes that are not UTF-8")]
    assert write_rejects(tmp_path / "rejects.jsonl", result.rejects) == 6


def test_eval_prompts_and_planted_contamination():
    prompts = [json.loads(line) for line in EVAL_PROMPTS.read_text(encoding="utf-8").splitlines()]
    assert len(prompts) == 36 and len({p["id"] for p in prompts}) == 36
    assert all(set(p) == {"id", "prompt", "category"} for p in prompts)
    assert {p["category"] for p in prompts} == {"coding", "explanation", "writing", "advice", "reasoning",
                                                "python-stdlib"}

    def norm(text: str) -> str:
        return " ".join("".join(c if c.isalnum() else " " for c in text.lower()).split())

    by_text = {norm(p["prompt"]): p["id"] for p in prompts}
    hits = {}
    for ex in read_pools(POOL_FILES).examples:
        user = norm(next(m["content"] for m in ex["messages"] if m["role"] == "user"))
        if user in by_text:
            hits[by_text[user]] = ex["meta"].get("quality_note", "")
    assert sorted(hits) == ["coding-02", "explanation-02", "python-stdlib-05", "writing-03"]
    assert all(note.startswith("contaminated: ") for note in hits.values())
