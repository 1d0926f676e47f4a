"""im2col / col2im against direct loop definitions, the adjoint identity, and output-size arithmetic."""

import numpy
import pytest

import xpnet
from tests.helpers import host
from tests.reference import conv as ref
from xpnet.ops.im2col import col2im, col2im_grid, im2col, output_hw, output_size

# (x shape, kernel, stride, pads, dilation)
GEOMETRIES = [
    ((2, 3, 5, 5), (3, 3), (1, 1), ((0, 0), (0, 0)), (1, 1)),
    ((1, 2, 5, 7), (2, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((2, 1, 6, 6), (2, 2), (2, 2), ((0, 0), (0, 0)), (1, 1)),
    ((1, 2, 7, 6), (3, 2), (3, 2), ((2, 2), (1, 1)), (1, 1)),
    ((2, 2, 6, 5), (2, 2), (3, 3), ((0, 0), (0, 0)), (1, 1)),
    ((1, 2, 5, 6), (3, 2), (2, 1), ((1, 0), (0, 2)), (1, 1)),
    ((1, 1, 7, 7), (3, 3), (1, 2), ((1, 1), (0, 0)), (2, 2)),
    ((2, 2, 6, 5), (2, 3), (2, 1), ((0, 1), (1, 0)), (2, 1)),
    ((1, 3, 4, 4), (1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1)),
    ((1, 2, 4, 3), (3, 4), (2, 2), ((1, 1), (1, 1)), (1, 1)),
    ((1, 1, 3, 3), (5, 5), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((2, 2, 7, 6), (3, 2), (1, 1), ((1, 0), (2, 1)), (2, 3)),
]


def _ids(case):
    shape, kernel, stride, pads, dilation = case
    return f"x{shape}-k{kernel}-s{stride}-p{pads}-d{dilation}".replace(" ", "")


BATCH_LAST = (1, 2, 3, 0, 4, 5)  # (N, C, KH, KW, OH, OW) -> (C, KH, KW, N, OH, OW)


@pytest.mark.parametrize("batch_last", [False, True])
@pytest.mark.parametrize("case", GEOMETRIES, ids=_ids)
def test_im2col_matches_loop_definition(xp, rng, case, im2col_passes, batch_last):
    shape, kernel, stride, pads, dilation = case
    x = rng.standard_normal(shape)
    cols = im2col(xp.asarray(x), kernel, stride, pads, dilation, batch_last=batch_last)
    expected = ref.im2col(x, kernel, stride, pads, dilation)
    if batch_last:
        expected = expected.transpose(BATCH_LAST)
    assert cols.shape == expected.shape
    numpy.testing.assert_array_equal(host(cols), expected)


@pytest.mark.parametrize("batch_last", [False, True])
@pytest.mark.parametrize("case", GEOMETRIES, ids=_ids)
def test_col2im_matches_loop_definition(xp, rng, case, im2col_passes, batch_last):
    shape, kernel, stride, pads, dilation = case
    OH, OW = output_hw(shape[2:], kernel, stride, pads, dilation)
    cols = rng.standard_normal((shape[0], shape[1], *kernel, OH, OW))
    layout = cols.transpose(BATCH_LAST) if batch_last else cols
    x = col2im(xp.asarray(numpy.ascontiguousarray(layout)), shape, stride, pads, dilation, batch_last=batch_last)
    assert x.shape == shape
    numpy.testing.assert_allclose(host(x), ref.col2im(cols, shape, stride, pads, dilation), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("case", GEOMETRIES, ids=_ids)
def test_col2im_is_adjoint_of_im2col(xp, rng, case, im2col_passes):
    shape, kernel, stride, pads, dilation = case
    OH, OW = output_hw(shape[2:], kernel, stride, pads, dilation)
    x = rng.standard_normal(shape)
    c = rng.standard_normal((shape[0], shape[1], *kernel, OH, OW))
    lhs = numpy.sum(host(im2col(xp.asarray(x), kernel, stride, pads, dilation)) * c)
    rhs = numpy.sum(x * host(col2im(xp.asarray(c), shape, stride, pads, dilation)))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, numpy.sum(numpy.abs(c)))


@pytest.mark.parametrize("case", GEOMETRIES, ids=_ids)
def test_integer_valued_float32_is_exact_on_every_backend(xp, case, im2col_passes):
    shape, kernel, stride, pads, dilation = case
    x = numpy.arange(numpy.prod(shape), dtype=numpy.float32).reshape(shape) - 7
    cols = host(im2col(xp.asarray(x), kernel, stride, pads, dilation))
    assert cols.dtype == numpy.float32
    numpy.testing.assert_array_equal(cols, im2col(x, kernel, stride, pads, dilation))
    numpy.testing.assert_array_equal(cols, ref.im2col(x, kernel, stride, pads, dilation))
    c = numpy.arange(cols.size, dtype=numpy.float32).reshape(cols.shape) % 13 - 6
    back = host(col2im(xp.asarray(c), shape, stride, pads, dilation))
    assert back.dtype == numpy.float32
    numpy.testing.assert_array_equal(back, col2im(c, shape, stride, pads, dilation))
    numpy.testing.assert_array_equal(back, ref.col2im(c, shape, stride, pads, dilation))


STRIDE1 = [case for case in GEOMETRIES if case[2] == (1, 1)]


def _grid_columns(cols, shape, pads):
    """Batch-last columns (C, KH, KW, N, OH, OW) placed on the padded grid (C, KH, KW, N*Hp*Wp), zeros elsewhere."""
    C, KH, KW, N, OH, OW = cols.shape
    Hp, Wp = shape[2] + sum(pads[0]), shape[3] + sum(pads[1])
    grid = numpy.zeros((C, KH, KW, N, Hp, Wp), cols.dtype)
    grid[..., :OH, :OW] = cols
    return grid.reshape(C, KH, KW, N * Hp * Wp)


def _col2im_grid_loop(cols, shape, pads, dilation):
    """The definition: flat padded image[c, m + i*DH*Wp + j*DW] += cols[c, i, j, m], one value at a time."""
    C, KH, KW, L = cols.shape
    (pt, pb), (pl, pr) = pads
    Hp, Wp = shape[2] + pt + pb, shape[3] + pl + pr
    flat = numpy.zeros((C, (shape[0] + 1) * Hp * Wp))  # one image of slack: more than any tap offset
    for c in range(C):
        for i in range(KH):
            for j in range(KW):
                for m in range(L):
                    flat[c, m + i * dilation[0] * Wp + j * dilation[1]] += cols[c, i, j, m]
    image = flat.reshape(C, shape[0] + 1, Hp, Wp)[:, :shape[0], pt:pt + shape[2], pl:pl + shape[3]]
    return image.transpose(1, 0, 2, 3)


@pytest.mark.parametrize("case", STRIDE1, ids=_ids)
def test_col2im_grid_matches_loop_definition_and_batch_last_col2im(xp, rng, case):
    shape, kernel, stride, pads, dilation = case
    OH, OW = output_hw(shape[2:], kernel, stride, pads, dilation)
    Hp, Wp = shape[2] + sum(pads[0]), shape[3] + sum(pads[1])
    any_cols = rng.standard_normal((shape[1], *kernel, shape[0] * Hp * Wp))  # non-output columns too
    got = host(col2im_grid(xp.asarray(any_cols), shape, pads, dilation))
    assert got.shape == shape
    numpy.testing.assert_allclose(got, _col2im_grid_loop(any_cols, shape, pads, dilation), rtol=1e-13, atol=1e-13)
    cols = rng.standard_normal((shape[1], *kernel, shape[0], OH, OW))  # batch-last layout
    on_grid = host(col2im_grid(xp.asarray(_grid_columns(cols, shape, pads)), shape, pads, dilation))
    numpy.testing.assert_allclose(on_grid, col2im(cols, shape, stride, pads, dilation, batch_last=True),
                                  rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("case", STRIDE1, ids=_ids)
def test_col2im_grid_is_exact_on_every_backend(xp, case):
    shape, kernel, _, pads, dilation = case
    L = shape[0] * (shape[2] + sum(pads[0])) * (shape[3] + sum(pads[1]))
    cols = numpy.arange(shape[1] * kernel[0] * kernel[1] * L, dtype=numpy.float32) % 11 - 5
    cols = cols.reshape(shape[1], *kernel, L)
    got = host(col2im_grid(xp.asarray(cols), shape, pads, dilation))
    assert got.dtype == numpy.float32
    numpy.testing.assert_array_equal(got, _col2im_grid_loop(cols, shape, pads, dilation).astype(numpy.float32))


def test_col2im_of_ones_counts_the_windows_covering_each_pixel(xp):
    shape, stride, pads = (1, 1, 5, 5), (2, 2), ((0, 0), (0, 0))  # kernel 3x3, output 2x2
    ones = numpy.ones((1, 1, 3, 3, 2, 2))
    counts = host(col2im(xp.asarray(ones), shape, stride, pads))
    row = numpy.array([1, 1, 2, 1, 1], dtype=float)
    numpy.testing.assert_array_equal(counts[0, 0], numpy.outer(row, row))


def test_im2col_pad_value_fills_the_border(xp, im2col_passes):
    x = numpy.arange(4.0).reshape(1, 1, 2, 2)
    cols = host(im2col(xp.asarray(x), (2, 2), (1, 1), ((1, 0), (0, 1)), pad_value=-numpy.inf))
    numpy.testing.assert_array_equal(cols, ref.im2col(x, (2, 2), (1, 1), ((1, 0), (0, 1)), pad_value=-numpy.inf))
    assert numpy.isneginf(cols[0, 0, 0, :, 0, :]).all() and numpy.isneginf(cols[0, 0, :, 1, :, 1]).all()


def test_im2col_of_non_contiguous_view_matches_contiguous(xp, rng, im2col_passes):
    big = rng.standard_normal((2, 3, 10, 6))
    view = xp.asarray(big)[:, :, ::2].transpose(0, 1, 3, 2)
    contiguous = numpy.ascontiguousarray(big[:, :, ::2].transpose(0, 1, 3, 2))
    args = ((2, 3), (2, 1), ((1, 0), (0, 1)), (1, 2))
    numpy.testing.assert_array_equal(host(im2col(view, *args)), ref.im2col(contiguous, *args))


def test_im2col_and_col2im_leave_inputs_unchanged(xp, rng):
    x = rng.standard_normal((2, 2, 5, 4))
    x_dev = xp.asarray(x)
    cols = im2col(x_dev, (2, 2), (1, 2), ((1, 1), (0, 1)))
    cols_before = host(cols).copy()
    col2im(cols, x.shape, (1, 2), ((1, 1), (0, 1)))
    numpy.testing.assert_array_equal(host(x_dev), x)
    numpy.testing.assert_array_equal(host(cols), cols_before)


@pytest.mark.parametrize("size, kernel, stride, pads, dilation, expected", [
    (5, 3, 1, (0, 0), 1, 3),
    (5, 3, 1, (1, 1), 1, 5),
    (5, 3, 2, (0, 0), 1, 2),
    (6, 3, 2, (0, 0), 1, 2),   # last column dropped
    (7, 3, 2, (0, 0), 1, 3),
    (5, 1, 1, (0, 0), 1, 5),
    (5, 1, 3, (0, 0), 1, 2),   # stride > kernel
    (4, 3, 2, (1, 1), 1, 2),
    (3, 4, 2, (1, 1), 1, 1),   # kernel wider than the input
    (3, 5, 1, (1, 1), 1, 1),   # kernel == padded input
    (7, 3, 1, (0, 0), 2, 3),   # dilated span 5
    (5, 3, 1, (0, 0), 2, 1),
    (5, 2, 2, (1, 0), 1, 3),
    (5, 2, 2, (0, 1), 1, 3),
    (1, 1, 1, (0, 0), 1, 1),
    (2, 3, 1, (0, 0), 1, 0),   # too small: below 1
    (2, 3, 1, (0, 0), 2, -2),
])
def test_output_size_table(size, kernel, stride, pads, dilation, expected):
    assert output_size(size, kernel, stride, pads, dilation) == expected
    if expected >= 1:
        assert expected == ref.out_len(size, kernel, stride, sum(pads), dilation)


def test_output_hw_rejects_a_kernel_larger_than_the_padded_input():
    with pytest.raises(xpnet.ShapeError, match=r"padded input 4x5 is smaller than the kernel 5x3"):
        output_hw((2, 3), (5, 3), (1, 1), ((1, 1), (1, 1)), who="conv2d")
    with pytest.raises(xpnet.ShapeError, match=r"dilated kernel 5x5"):
        output_hw((4, 4), (3, 3), (1, 1), ((0, 0), (0, 0)), (2, 2))


def test_im2col_rejects_too_small_input(xp):
    x = xp.asarray(numpy.zeros((1, 1, 2, 2)))
    with pytest.raises(xpnet.ShapeError, match=r"padded input 2x2 is smaller than the kernel 3x3"):
        im2col(x, (3, 3), (1, 1), ((0, 0), (0, 0)))
