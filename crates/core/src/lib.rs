//! Pure domain of patchline.
