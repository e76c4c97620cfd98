"""A confirm chosen as a deadlock victim runs again (fulfilment.confirm.payment_confirm): this
checks the rule that recognises a victim on each server engine, with a real deadlock between two
connections, and that other database errors are not taken for one."""
from __future__ import annotations

import threading

import pytest
from django.db import DatabaseError, connection, transaction

from kami.core.locks import deadlock_victim
from kami.stock.models import Key
from tests.factories import add_keys

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]


def lock_in_turn(first: int, second: int, barrier: threading.Barrier, errors: list) -> None:
    try:
        with transaction.atomic():  # hold `first`, then ask for `second`: two of these cross
            list(Key.objects.select_for_update().filter(pk=first))
            barrier.wait(timeout=10)
            list(Key.objects.select_for_update().filter(pk=second))
    except DatabaseError as exc:
        errors.append(exc)
    finally:
        connection.close()


def test_a_real_deadlock_is_recognised_and_other_errors_are_not(make_product, server_db):
    # given two keys and two connections that lock them in opposite orders
    a, b = (k.pk for k in add_keys(make_product(), ["DL-A", "DL-B"]))
    barrier, errors = threading.Barrier(2), []
    threads = [threading.Thread(target=lock_in_turn, args=(x, y, barrier, errors)) for x, y in ((a, b), (b, a))]
    # when
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then: the database broke the deadlock by rolling one back, and we know it for one
    assert len(errors) == 1 and deadlock_victim(errors[0]), errors
    with pytest.raises(DatabaseError) as other:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table_here")
    assert not deadlock_victim(other.value)
