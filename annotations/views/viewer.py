"""Pages: the worklist of a dataset and the CT viewer of a series."""
from django.shortcuts import get_object_or_404, render

from adrenal_site.roles import CLINICIAN, role_required

from ..api.viewer import boxes_json, series_for, volume_header
from ..models import Dataset, Gland, Series
from ..services import verdicts
from ..services.findings import MAX_COMMENT_CHARS, findings_of
from ..services.worklist import FILTER_CHOICES, FILTERS, worklist_rows

VIEWER_MODULES = [f"frontend/js/{m}.js" for m in (
    "viewer/main", "viewer/boxes", "viewer/evidence", "viewer/findings", "viewer/geometry", "viewer/overlays", "viewer/panel",
    "viewer/strip", "viewer/view", "viewer/volume", "http", "charts")]


@role_required(CLINICIAN)
def worklist(request, pk: int):
    """Scans of a dataset with label, box status and verdict; filters, counts, keyboard navigation."""
    dataset = get_object_or_404(Dataset.objects.visible_to(request.user), pk=pk)
    data = worklist_rows(dataset, request.GET.dict())
    return render(request, "annotations/worklist.html", {
        "dataset": dataset, "data": data, "filters": data["filters"],
        "statuses": Series.BoxStatus.choices, "verdicts": FILTER_CHOICES["verdict"],
        "labels": FILTER_CHOICES["label"], "filter_names": FILTERS,
    })


@role_required(CLINICIAN)
def viewer(request, pk: int):
    """The CT viewer: axial, coronal and sagittal views, both crop boxes, per-side findings, the latest verdict.
    Everything the page shows from users or DICOM headers travels in the JSON config and is written as text."""
    series = series_for(request.user, pk)
    # ?verdict=<id>: the verdict a verdict page links from (one the user may see on this scan), else the latest
    wanted = request.GET.get("verdict", "")
    prediction = verdicts.latest(series, request.user, int(wanted) if wanted.isdigit() and len(wanted) < 10 else None)
    config = {
        "series_id": series.pk,
        "dataset_id": series.dataset.pk,
        "volume": volume_header(series) if hasattr(series, "volume") else None,
        "boxes": boxes_json(series),
        "findings": findings_of(series),
        "glands": [[value, label] for value, label in Gland.choices],
        "max_comment_chars": MAX_COMMENT_CHARS,
        "z_mm": _float(request.GET.get("z_mm")),
        "prediction": prediction,
        "user": request.user.username,
    }
    notes = series.volume.note_list if hasattr(series, "volume") else []
    # one who opens a scan they submitted without being a member of its dataset gets no link to its worklist (a 404)
    member = Dataset.objects.visible_to(request.user).filter(pk=series.dataset.pk).exists()
    return render(request, "annotations/viewer.html", {"series": series, "config": config, "prediction": prediction,
                                                       "member": member,
                                                       "geometry_notes": notes,
                                                       "sides": [("R", "patient right"), ("L", "patient left")],
                                                       "modules": VIEWER_MODULES})


def _float(value):
    try:
        number = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return number if number is not None and abs(number) < 1e6 else None
