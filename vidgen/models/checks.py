"""Argument checks shared by vidgen's layers."""


def check_cell_arguments(filters: int, kernel_size: int) -> None:
    """Raises ValueError for non-positive `filters` or an even / non-positive `kernel_size`."""
    if filters <= 0:
        raise ValueError(f"filters must be positive. Received: filters={filters}")
    if kernel_size <= 0 or kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size must be a positive odd number. Received: kernel_size={kernel_size}")
