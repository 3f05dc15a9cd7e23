"""Decoding a whole online profile: protobuf's own ``Value.FromString`` (upb) against hand-written decoders.

``featurestore/wire.py`` once held hand-written decoders of Feast's ``Value`` bytes. This benchmark
loads them from the commit before they were removed (``git show 33e80dd:featurestore/wire.py``) and
times both on the same bytes, in alternating rounds: one profile's 12 string lists of 10 topics, 12
float lists of 10 scores, two strings, one string list and one int64 list of intents.

    .venv/bin/python benchmarks/bench_wire.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

from feast.protos.feast.types.Value_pb2 import FloatList, Int64List, StringList
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from featurestore import wire

HAND_WRITTEN_AT = "33e80dd"


def hand_written_module():  # noqa: ANN201
    source = subprocess.run(["git", "show", f"{HAND_WRITTEN_AT}:featurestore/wire.py"], check=True, capture_output=True, text=True, cwd=Path(__file__).parent).stdout
    folder = Path(tempfile.mkdtemp())
    (folder / "wire_hand_written.py").write_text(source)
    sys.path.insert(0, str(folder))
    import wire_hand_written

    return wire_hand_written


def profile_bytes() -> dict[str, bytes]:
    return {
        "topics": ValueProto(string_list_val=StringList(val=[f"Sports > Football > Topic {i}" for i in range(10)])).SerializeToString(),
        "scores": ValueProto(float_list_val=FloatList(val=[0.1 * i for i in range(10)])).SerializeToString(),
        "query": ValueProto(string_val="aespa japan album").SerializeToString(),
        "stamps": ValueProto(int64_list_val=Int64List(val=[1_764_000_000 + i for i in range(10)])).SerializeToString(),
    }


def decode_profile(m, raw: dict[str, bytes]) -> tuple:  # noqa: ANN001
    lists = [m.decode_string_list(raw["topics"]) for _ in range(12)]
    scores = [m.decode_float_list(raw["scores"]) for _ in range(12)]
    return lists, scores, m.decode_string(raw["query"]), m.decode_string(raw["query"]), m.decode_string_list(raw["topics"]), m.decode_int64_list(raw["stamps"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--number", type=int, default=2000, help="profiles decoded per round and variant")
    args = ap.parse_args()
    hand = hand_written_module()
    raw = profile_bytes()
    assert decode_profile(hand, raw) == decode_profile(wire, raw), "the two decoders disagree"
    times: dict[str, list[float]] = {"protobuf Value.FromString (upb), ours now": [], f"hand-written ({HAND_WRITTEN_AT})": []}
    for _ in range(args.rounds):
        for name, module in zip(times, (wire, hand)):
            times[name].append(timeit.timeit(lambda m=module: decode_profile(m, raw), number=args.number) / args.number * 1e6)
    for name, ts in times.items():
        print(f"{name:45s} median {statistics.median(ts):6.1f} us, best {min(ts):6.1f} us a profile")
    ours, theirs = (statistics.median(ts) for ts in times.values())
    print(f"ratio hand-written / protobuf: {theirs / ours:.2f}x (above 1: protobuf is faster)")


if __name__ == "__main__":
    main()
