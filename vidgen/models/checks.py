"""Argument checks shared by vidgen's layers."""


def check_cell_arguments(filters: int, kernel_size: int) -> None:
    """Raises ValueError for non-positive `filters` or an even / non-positive `kernel_size`."""
    if filters <= 0:
        raise ValueError(f"filters must be positive. Received: filters={filters}")
    if kernel_size <= 0 or kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size must be a positive odd number. Received: kernel_size={kernel_size}")


def check_predictor_arguments(*, frame_size, channels, horizon, cell, cells, head, heads,
                              dna_kernel, core_filters, cdna_kernels, sampling_steps,
                              output_floor, latent_dim, kl_weight) -> None:
    """Raises ValueError for a `VideoPredictor` argument out of range (`cells`, `heads`: names)."""
    if frame_size <= 0 or frame_size % 4:
        raise ValueError(
            f"frame_size must be a positive multiple of 4. Received: frame_size={frame_size}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3. Received: channels={channels}")
    if horizon <= 0:
        raise ValueError(f"horizon must be positive. Received: horizon={horizon}")
    if cell not in cells:
        raise ValueError(f"cell must be one of {sorted(cells)}. Received: cell={cell!r}")
    if head not in heads:
        raise ValueError(f"head must be one of {heads}. Received: head={head!r}")
    if dna_kernel <= 0 or dna_kernel % 2 == 0:
        raise ValueError(f"dna_kernel must be a positive odd number. Received: {dna_kernel}")
    core_filters = tuple(int(f) for f in core_filters)
    if not core_filters or min(core_filters) <= 0:
        raise ValueError(f"core_filters must be positive integers. Received: {core_filters}")
    if cdna_kernels <= 0:
        raise ValueError(f"cdna_kernels must be positive. Received: {cdna_kernels}")
    if sampling_steps < 0:
        raise ValueError(f"sampling_steps must be >= 0. Received: {sampling_steps}")
    if not 0.0 <= output_floor < 1.0:
        raise ValueError(f"output_floor must be in [0, 1). Received: {output_floor}")
    if latent_dim < 0 or kl_weight < 0:
        raise ValueError(f"latent_dim and kl_weight must be >= 0. Received: latent_dim="
                         f"{latent_dim}, kl_weight={kl_weight}")
