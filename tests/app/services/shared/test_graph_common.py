from __future__ import annotations

import os
import random

from nodeloom.app.services.shared.graph_common import uuid_string


def test_seeding_the_global_generator_cannot_repeat_ids() -> None:
    random.seed(1234)
    first = [uuid_string() for _ in range(3)]
    random.seed(1234)
    second = [uuid_string() for _ in range(3)]
    assert not set(first) & set(second)


def test_a_forked_child_makes_other_ids_than_its_parent() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, uuid_string().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child_id = os.read(read, 64).decode()
    os.close(read)
    assert len(child_id) == 36
    assert child_id != uuid_string()


def test_ids_are_version_4_uuids() -> None:
    value = uuid_string()
    assert len(value) == 36
    assert value[14] == "4"
    assert value[19] in "89ab"
