"""AgeAtLeast: the YYYYMMDD rule gives the exact calendar birthday, including 29 February;
range checks stop field-wrapping tricks; all public inputs are bound."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from zk.credentials import age_inputs
from zk.field import R
from zk.poseidon import poseidon
from zk.testing import (
    SIGNAL,
    age_cases,
    assert_proves,
    assert_public_inputs_bound,
    assert_rejects,
)

NAME = "age_at_least"
SALT = 0x5A17


@pytest.fixture(scope="module")
def age(zk_prover):
    return zk_prover(NAME)


def inputs(dob: int, today: int, min_age: int) -> dict[str, int]:
    return age_inputs(dob, SALT, today, min_age, SIGNAL, check=False)


def test_public_inputs_in_spec_order_and_bound(age):
    proof = assert_proves(age, inputs(19800101, 20250615, 18))
    assert age.spec.public_inputs == ("dobCommitment", "currentDate", "minAge", "signalHash")
    assert proof.public_inputs[1:3] == (20250615, 18)
    assert_public_inputs_bound(age, proof)


def test_exactly_n_years_today_passes_one_day_before_fails(age):
    assert_proves(age, inputs(20070615, 20250615, 18))
    assert_rejects(age, inputs(20070615, 20250614, 18))


def test_year_end_boundary(age):
    # Born 31 Dec: of age on 31 Dec, not on 30 Dec (nor in the previous year's later months).
    assert_proves(age, inputs(20071231, 20251231, 18))
    assert_rejects(age, inputs(20071231, 20251230, 18))


def test_feb_29_birth_comes_of_age_on_march_1_in_common_years(age):
    assert_rejects(age, inputs(20000229, 20180228, 18))
    assert_proves(age, inputs(20000229, 20180301, 18))


def test_feb_29_birth_in_a_leap_year_is_of_age_on_feb_29(age):
    assert_proves(age, inputs(20000229, 20240229, 24))
    assert_rejects(age, inputs(20000229, 20240228, 24))


def test_wrong_salt_rejected(age):
    good = inputs(19900101, 20250101, 18)
    assert_rejects(age, {**good, "salt": SALT + 1})


def test_negative_min_age_rejected(age):
    # minAge = r - 1 ("-1 years") would make dob + minAge*10000 tiny; Num2Bits(8) refuses it.
    assert_rejects(age, {**inputs(20200101, 20250101, 18), "minAge": R - 1})
    assert_rejects(age, {**inputs(19000101, 20250101, 18), "minAge": 256})


def test_date_of_birth_wrapped_below_zero_rejected(age):
    # dob = r - 10000*50 (a date "50 years before year 0") committed honestly: without the
    # Num2Bits(32) check dob + 18*10000 would wrap to a small number <= today.
    dob = R - 10000 * 50
    good = inputs(20000101, 20250101, 18)
    wrapped = {**good, "dateOfBirth": dob, "dobCommitment": poseidon([dob, SALT])}
    assert_rejects(age, wrapped)


def test_current_date_above_32_bits_rejected(age):
    good = inputs(20000101, 20250101, 18)
    assert_rejects(age, {**good, "currentDate": 2**32 + 20250101})


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=age_cases())
def test_property_circuit_matches_the_calendar_rule(age, case):
    case_inputs, holds = case
    if holds:
        assert_proves(age, case_inputs)
    else:
        assert_rejects(age, case_inputs)
