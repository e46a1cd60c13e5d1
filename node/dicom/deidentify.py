"""De-identification on export: a documented subset of the DICOM Basic Application Level
Confidentiality Profile (PS3.15 Annex E, Table E.1-1, the "Basic Prof." column).

Actions (PS3.15 E.1.1): X remove; Z replace by an empty value; U replace by a new UID,
the same new UID for the same original throughout one export (``new_uid``). Where the
table allows several (X/Z, X/Z/D, Z/D), the node takes Z for attributes the usual IODs
require (Type 2) and X for the others. Every listed attribute is handled wherever it
occurs, in nested sequences too; private attributes are removed; the result says what was
done: PatientIdentityRemoved YES, DeidentificationMethod, DeidentificationMethodCodeSequence
(DCM 113100, Basic Application Confidentiality Profile) and
LongitudinalTemporalInformationModified REMOVED (dates are emptied or removed, not shifted).

Not done (so not claimed): the Clean Pixel Data, Clean Recognizable Visual Features,
Clean Graphics, Clean Structured Content and Clean Descriptors options. Pixel data is
returned as stored; an instance that says it carries burned-in annotation is refused.
docs/dicom.md has the table.
"""

from __future__ import annotations

import hashlib
import hmac
import io
from dataclasses import dataclass

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from node.dicom.instance import InvalidInstance, read_dataset
from node.exceptions import Conflict

METHOD = "emr-node: PS3.15 Annex E Basic Profile subset (docs/dicom.md)"
BASIC_PROFILE = ("113100", "DCM", "Basic Application Confidentiality Profile")


@dataclass(frozen=True, slots=True)
class Rule:
    keyword: str
    action: str  # X, Z or U

    @property
    def tag(self) -> int:
        tag = tag_for_keyword(self.keyword)
        assert tag is not None, self.keyword
        return tag


def _rules(action: str, *keywords: str) -> tuple[Rule, ...]:
    return tuple(Rule(k, action) for k in keywords)


RULES: tuple[Rule, ...] = (
    # Z: emptied (Type 2 in the common IODs: present, no value).
    *_rules(
        "Z",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "AccessionNumber",
        "ReferringPhysicianName",
        "StudyID",
        "StudyDate",
        "StudyTime",
        "ContentDate",
        "ContentTime",
    ),
    # X: removed.
    *_rules(
        "X",
        "IssuerOfPatientID",
        "PatientBirthTime",
        "OtherPatientIDs",
        "OtherPatientIDsSequence",
        "OtherPatientNames",
        "PatientBirthName",
        "PatientAge",
        "PatientSize",
        "PatientWeight",
        "PatientAddress",
        "PatientMotherBirthName",
        "MedicalRecordLocator",
        "PatientTelephoneNumbers",
        "EthnicGroup",
        "Occupation",
        "AdditionalPatientHistory",
        "PatientComments",
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionalDepartmentName",
        "ReferringPhysicianAddress",
        "ReferringPhysicianTelephoneNumbers",
        "StationName",
        "StudyDescription",
        "SeriesDescription",
        "PhysiciansOfRecord",
        "PerformingPhysicianName",
        "NameOfPhysiciansReadingStudy",
        "OperatorsName",
        "AdmittingDiagnosesDescription",
        "DeviceSerialNumber",
        "ProtocolName",
        "RequestingPhysician",
        "RequestAttributesSequence",
        "PerformedProcedureStepID",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        "PerformedProcedureStepDescription",
        "SeriesDate",
        "SeriesTime",
        "AcquisitionDate",
        "AcquisitionTime",
        "AcquisitionDateTime",
        "InstanceCreationDate",
        "InstanceCreationTime",
        "TimezoneOffsetFromUTC",
        "ReferencedPatientSequence",
        "ReferencedStudySequence",
        "OriginalAttributesSequence",
        "DigitalSignaturesSequence",
    ),
    # U: a new UID, consistent within the export.
    *_rules(
        "U",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "FrameOfReferenceUID",
        "InstanceCreatorUID",
        "ReferencedSOPInstanceUID",
        "ReferencedFrameOfReferenceUID",
        "RelatedFrameOfReferenceUID",
        "SynchronizationFrameOfReferenceUID",
        "IrradiationEventUID",
        "DimensionOrganizationUID",
        "ConcatenationUID",
        "StorageMediaFileSetUID",
        "UID",
    ),
)
_BY_TAG = {rule.tag: rule.action for rule in RULES}


def new_uid(salt: bytes, old: str) -> str:
    """The replacement of ``old`` in the export keyed by ``salt``: the same for the same
    UID (a study's instances stay one study), unlinkable to it without the salt."""
    # pydicom's root and a hash of the entropy sources (with prefix=None generate_uid
    # would be random); the keyed hash keeps the salt out of the hashed text.
    digest = hmac.new(salt, old.encode(), hashlib.sha256).hexdigest()
    return str(generate_uid(entropy_srcs=[digest]))


def deidentify_dataset(ds: Dataset, salt: bytes) -> Dataset:
    """Apply the rules to ``ds`` in place (and to its file meta) and return it."""
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        raise Conflict(
            "the instance has burned-in annotation: its pixel data would need cleaning, "
            "which this node does not do; it cannot be exported de-identified"
        )
    ds.remove_private_tags()  # recursive: private attributes in sequences too
    _apply(ds, salt)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        old = str(meta.MediaStorageSOPInstanceUID)
        meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID") or new_uid(salt, old)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = METHOD
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = BASIC_PROFILE
    ds.DeidentificationMethodCodeSequence = Sequence([code])
    ds.LongitudinalTemporalInformationModified = "REMOVED"
    return ds


def _apply(ds: Dataset, salt: bytes) -> None:
    # Nesting is bounded by read_dataset (MAX_NESTING): recursion stays shallow.
    for tag in list(ds.keys()):
        action = _BY_TAG.get(int(tag))
        if action == "X":
            del ds[tag]
            continue
        elem = ds[tag]
        if action == "Z":
            elem.value = None if elem.VR == "SQ" else ""
        elif action == "U" and elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            replaced = [new_uid(salt, str(v)) for v in values]
            elem.value = replaced if elem.VM > 1 else replaced[0]
        elif elem.VR == "SQ":
            for item in elem.value:
                _apply(item, salt)


def deidentify(data: bytes, salt: bytes) -> bytes:
    """The de-identified Part 10 instance of ``data``, in the transfer syntax it came in.
    Raises InvalidInstance for bytes that are no instance and Conflict for an instance
    with burned-in annotation."""
    ds = read_dataset(data)
    out = io.BytesIO()
    try:
        deidentify_dataset(ds, salt)
        pydicom.dcmwrite(out, ds, enforce_file_format=True)
    except Conflict:
        raise
    except Exception as err:  # values pydicom read but cannot convert or re-encode
        raise InvalidInstance(
            f"the instance cannot be de-identified ({type(err).__name__})"
        ) from None
    return out.getvalue()
