"""The log tailer: follows log files and hands their lines to the record sink, at least once.

Split by concept: :mod:`.follow` (which files, through rotations and restarts), :mod:`.lines` (cutting
lines), :mod:`.multiline` (records of several lines), :mod:`.positions` (the position file) and
:mod:`.log_tailer` (reading, delivery, the poll).
"""

from pca_core.telemetry.tailer.log_tailer import LogTailer, RecordEmitter
from pca_core.telemetry.tailer.multiline import Multiline

__all__ = ["LogTailer", "Multiline", "RecordEmitter"]
