"""kiosk.coerce on datasets: what ``apply`` changes or refuses, and what ``describe`` says.

What reaches a peer is tested in tests/outbox/test_outbox_coerce.py; these are the cases a file from
``kiosk convert`` does not have (names with ideographic groups, nested text, empty values).
"""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from kiosk import coerce
from kiosk.config import CoerceConfig

SC = "1.2.840.10008.5.1.4.1.1.7"


def dataset(**values) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = SC, "1.2.3.4"
    ds.SpecificCharacterSet = "ISO_IR 192"
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def test_describe_says_each_change_in_words():
    rules = CoerceConfig(set={"InstitutionName": "Legacy Campus"}, remove=["ReferringPhysicianName"],
                         require=["AccessionNumber"], character_set="ISO_IR 100", name_format="{family}^{given}",
                         sop_class_fallback={"VideoEndoscopicImageStorage": "MultiFrameTrueColorSecondaryCaptureImageStorage"})
    assert coerce.describe(rules) == [
        "InstitutionName set to 'Legacy Campus'",
        "ReferringPhysicianName removed",
        "person names written as {family}^{given}",
        "text re-encoded as ISO_IR 100; an object with text it cannot hold is refused",
        "Video Endoscopic Image Storage sent as Multi-frame True Color Secondary Capture Image Storage",
        "not sent without AccessionNumber",
    ]
    assert coerce.describe(None) == [] and coerce.describe(CoerceConfig()) == []


def test_nested_text_that_does_not_fit_is_refused_naming_where_it_is():
    item = Dataset()
    item.ScheduledProcedureStepDescription = "Gastroskopie Šimková"
    ds = dataset(PatientName="Muller^Anna", RequestAttributesSequence=Sequence([item]))
    with pytest.raises(coerce.Refused) as refused:
        coerce.apply(ds, CoerceConfig(character_set="ISO_IR 100"))
    assert refused.value.message.startswith(
        "RequestAttributesSequence > ScheduledProcedureStepDescription (0040,0007) does not fit")
    assert "Šimková" not in str(refused.value)


def test_names_keep_their_groups_and_the_default_repertoire_has_no_term():
    ds = dataset(PatientName="Yamada^Tarou^Ichi^Dr=山田^太郎^一", OperatorsName=["Doe^John^Q", "Roe^Jane"])
    coerce.apply(ds, CoerceConfig(name_format="{family}^{given}"))
    assert str(ds.PatientName) == "Yamada^Tarou=山田^太郎"
    assert [str(n) for n in ds.OperatorsName] == ["Doe^John", "Roe^Jane"]
    ascii_only = dataset(PatientName="Doe^John")
    coerce.apply(ascii_only, CoerceConfig(character_set="ISO_IR 6"))
    assert "SpecificCharacterSet" not in ascii_only


@pytest.mark.parametrize("value", [None, "", "^", "  "])
def test_an_empty_value_does_not_satisfy_require(value):
    ds = dataset(ReferringPhysicianName=value)
    with pytest.raises(coerce.Refused, match=r"ReferringPhysicianName \(0008,0090\) is required"):
        coerce.apply(ds, CoerceConfig(require=["ReferringPhysicianName"]))


def test_set_remove_and_fallback_leave_the_identity_alone():
    ds = dataset(PatientID="P1", PatientName="Doe^John", StationName="KIOSK", SeriesNumber=1)
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.1"
    coerce.apply(ds, CoerceConfig(set={"InstitutionName": "Legacy Campus", "SeriesNumber": 7}, remove=["StationName"],
                                  sop_class_fallback={"VLEndoscopicImageStorage": "SecondaryCaptureImageStorage"}))
    assert (ds.InstitutionName, ds.SeriesNumber, "StationName" in ds) == ("Legacy Campus", 7, False)
    assert (ds.SOPClassUID, ds.SOPInstanceUID, ds.PatientID, str(ds.PatientName)) == (SC, "1.2.3.4", "P1", "Doe^John")
