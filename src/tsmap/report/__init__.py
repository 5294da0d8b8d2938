"""``tsmap report``: the paper's experiments and figures on a store, as one report.

What runs (everything on stored VideoMaps; only the density store needs the videos):

- **Table II** (head designs): TSN, a 3-layer LSTM, an AlexNet-style head, a 1-layer
  ConvNet and the paper's 3-layer ConvNet, all without attention (the paper's 3-layer
  row, 55.0, is its Table III "w/o Attn." row), trained on the same maps.
- **Table III** (attention): the 3-layer head with attention none / A0 / A1&A2 /
  A0&A1&A2, and A0&A1&A2 with the attention branch's global FC (the paper's layout, with the
  feature axis averaged before the FC; the other rows score each frame by its content). The "none" row is Table
  II's 3-layer row, trained once.
- Each row is trained with ``seeds`` seeds (initial weights, batch order, dropout) on the
  training clips minus a validation set carved from them, which picks each head's epoch;
  rows show the validation top-1 and the test figures (mean, sample standard deviation,
  range over the seeds). Test figures are measured once per head, never used to choose.
- **Fig. 5** (density): the A0A1A2 and TSN heads of every seed tested with T' frames
  per video (``density.py``).
- **Figs. 6, 9-10, 11, 8** use one pair of heads: ``videomap.pt``/``tsn.pt`` of a run
  folder when given (checked to be trained on the store's maps), else the first seed's
  A0A1A2 and TSN heads of the report.
- **Attention / Grad-CAM on the action**: for datasets that record each video's action
  interval (the demo's ``dataset.json``), the share of a0 and of Grad-CAM mass on the
  interval's rows, against the interval's share of the rows (what uniform weights give).

Modules: ``options`` (ReportOptions), ``experiments`` (the designs as data, training and
reuse), ``density`` (Fig. 5), ``analysis`` (explained heads, localization, checks),
``figures`` (PNG), ``document`` (Markdown, HTML, CSV, JSON), ``build`` (``build_report``).
"""

from tsmap.report.build import build_report
from tsmap.report.document import write_outputs
from tsmap.report.options import ReportOptions

__all__ = ["ReportOptions", "build_report", "write_outputs"]
