"""Readers of the external formats: the NSD tree (:mod:`.nsd`), the FreeSurfer files it ships
(:mod:`.freesurfer`), its subject-space NIfTI volumes (:mod:`.nifti`) and the Algonauts 2023
release (:mod:`.algonauts`). Each reader raises
:class:`brainnet.errors.DataFormatError` naming the file."""

from brainnet.data.formats import algonauts, freesurfer, nifti, nsd

__all__ = ["algonauts", "freesurfer", "nifti", "nsd"]
