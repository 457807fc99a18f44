"""Analyses over results: pure functions of predictions, maps and planted truth (no training).

* :mod:`.brain_to_network`, :mod:`.channels` - a FactorTopy's selectors as maps of a backbone;
  channel clustering and top-channel images;
* :mod:`.memory_replay`, :mod:`.replay_design`, :mod:`.replay_peak`, :mod:`.replay_results` - the
  memory-replay lag analysis (the fits themselves: :mod:`brainnet.training.replay_grid`);
* :mod:`.truth`, :mod:`.planted` - nsd-mini's planted truth looked up for a prepared dataset.
"""

from brainnet.analysis import (
                                      brain_to_network,
                                      channels,
                                      memory_replay,
                                      planted,
                                      replay_design,
                                      replay_peak,
                                      replay_results,
                                      truth,
)
from brainnet.analysis.brain_to_network import *  # noqa: F403
from brainnet.analysis.channels import *  # noqa: F403
from brainnet.analysis.memory_replay import *  # noqa: F403
from brainnet.analysis.planted import *  # noqa: F403
from brainnet.analysis.replay_design import *  # noqa: F403
from brainnet.analysis.replay_peak import *  # noqa: F403
from brainnet.analysis.replay_results import *  # noqa: F403
from brainnet.analysis.truth import *  # noqa: F403

__all__ = sorted({name for module in (brain_to_network, channels, memory_replay, planted, replay_design, replay_peak,
                                      replay_results, truth) for name in module.__all__})
