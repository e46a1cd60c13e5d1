"""De-identification on export (PS3.15 Annex E subset): every listed attribute is removed,
emptied or replaced wherever it occurs, private attributes go, UIDs map consistently
within one export key, and pixel data is unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from node.dicom.deidentify import RULES, deidentify, new_uid
from node.dicom.instance import InvalidInstance
from node.exceptions import Conflict
from tests.node.dicom.conftest import TEST_FILES_DIR, bundled_files, encode, fresh_copy, read

SALT = b"export key one"

_DUMMY = {
    "DA": "20010203",
    "TM": "040506",
    "DT": "20010203040506",
    "UI": "1.2.3.4.5.6",
    "AS": "042Y",
    "CS": "O",
    "DS": "1.5",
    "IS": "7",
    "US": 1,
    "SS": 1,
    "FL": 1.0,
    "FD": 1.0,
}


def _dummy(keyword: str) -> object:
    tag = tag_for_keyword(keyword)
    assert tag is not None
    vr = dictionary_VR(tag)
    if vr == "SQ":
        item = Dataset()
        item.PatientName = "Nested^Name"
        item.ReferencedSOPInstanceUID = "1.2.3.4.5.6"
        return Sequence([item])
    return _DUMMY.get(vr, "identifying text")


def _everything() -> Dataset:
    """CT_small with every listed attribute set, and again inside a sequence item, plus
    private attributes: the profile is checked on all of them, not only on what the bundled
    files happen to carry."""
    ds = fresh_copy("CT_small.dcm")
    for rule in RULES:
        if rule.keyword not in ds:
            setattr(ds, rule.keyword, _dummy(rule.keyword))
    nested = Dataset()
    for rule in RULES:
        if rule.action != "U" and dictionary_VR(rule.tag) != "SQ":
            setattr(nested, rule.keyword, _dummy(rule.keyword))
    nested.StudyInstanceUID = ds.StudyInstanceUID
    nested.add_new(0x00091001, "LO", "private in a sequence")
    ds.ReferencedImageSequence = Sequence([nested])
    block = ds.private_block(0x0011, "EMR TEST", create=True)
    block.add_new(0x01, "LO", "private identifying text")
    return ds


Path_ = tuple[tuple[str, int], ...]


def _by_path(ds: Dataset, path: Path_ = ()) -> dict[Path_, Dataset]:
    """Every data set in ``ds`` (itself and each sequence item), by where it is."""
    found = {path: ds}
    for elem in ds:
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value):
                found |= _by_path(item, (*path, (elem.keyword, i)))
    return found


def _all_datasets(ds: Dataset) -> list[Dataset]:
    return list(_by_path(ds).values())


def test_every_listed_attribute_is_removed_emptied_or_replaced() -> None:
    original = _everything()
    out = read(deidentify(encode(original), SALT))
    removed = {r.keyword for r in RULES if r.action == "X"}
    outputs = _by_path(out)
    checked = 0
    for where, before in _by_path(original).items():
        after = outputs.get(where)
        if after is None:  # inside a removed sequence
            assert any(keyword in removed for keyword, _i in where), where
            continue
        for rule in RULES:
            if rule.keyword not in before:
                continue
            checked += 1
            if rule.action == "X":
                assert rule.keyword not in after, (rule.keyword, where)
            elif rule.action == "Z":
                assert rule.keyword in after, (rule.keyword, where)
                assert after[rule.tag].value in ("", None, []), (rule.keyword, where)
            else:
                old = before[rule.tag].value
                assert after[rule.tag].value == new_uid(SALT, str(old)), (rule.keyword, where)
                assert after[rule.tag].value != old
    assert checked >= len(RULES)
    # private attributes are gone, at the top level and in items
    assert not any(elem.tag.is_private for d in _all_datasets(out) for elem in d)
    # the data set says what was done
    assert out.PatientIdentityRemoved == "YES"
    assert "PS3.15" in out.DeidentificationMethod
    (code,) = out.DeidentificationMethodCodeSequence
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("113100", "DCM")
    assert out.LongitudinalTemporalInformationModified == "REMOVED"
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    # pixel data is untouched
    assert out.PixelData == original.PixelData
    # a study UID is replaced by the same new UID wherever it occurs
    assert out.ReferencedImageSequence[0].StudyInstanceUID == out.StudyInstanceUID


def test_the_rules_cover_the_attributes_the_issue_names() -> None:
    actions = {r.keyword: r.action for r in RULES}
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientAddress",
        "OtherPatientIDs",
        "InstitutionName",
        "ReferringPhysicianName",
        "AccessionNumber",
        "StudyID",
        "StudyDate",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
    ):
        assert keyword in actions, keyword
    assert all(r.action in ("X", "Z", "U") for r in RULES)


@pytest.mark.parametrize("path", bundled_files(), ids=lambda p: p.name)
def test_each_bundled_file_de_identifies_with_its_pixels_intact(path: Path) -> None:
    data = path.read_bytes()
    original, out = read(data), read(deidentify(data, SALT))
    assert out.get("PixelData") == original.get("PixelData")
    assert out.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert out.PatientIdentityRemoved == "YES"
    for rule in RULES:
        if rule.action == "X":
            assert rule.keyword not in out
        elif rule.action == "Z" and rule.keyword in original:
            assert out[rule.tag].value in ("", None)
    assert out.SOPInstanceUID == new_uid(SALT, original.SOPInstanceUID)


def test_uids_are_consistent_within_an_export_key_and_unlinkable_across() -> None:
    study = generate_uid()
    a = fresh_copy("CT_small.dcm", StudyInstanceUID=study)
    b = fresh_copy("MR_small.dcm", StudyInstanceUID=study)
    one = [read(deidentify(encode(ds), SALT)) for ds in (a, b)]
    other = read(deidentify(encode(a), b"export key two"))
    assert one[0].StudyInstanceUID == one[1].StudyInstanceUID != study
    assert other.StudyInstanceUID not in (study, one[0].StudyInstanceUID)
    assert one[0].SOPInstanceUID != one[1].SOPInstanceUID


def test_burned_in_annotation_is_refused_and_garbage_is_invalid() -> None:
    ds = fresh_copy("CT_small.dcm", BurnedInAnnotation="YES")
    with pytest.raises(Conflict):
        deidentify(encode(ds), SALT)
    with pytest.raises(InvalidInstance):
        deidentify(b"not dicom", SALT)
    with pytest.raises(InvalidInstance):
        deidentify((TEST_FILES_DIR / "MR_truncated.dcm").read_bytes(), SALT)
