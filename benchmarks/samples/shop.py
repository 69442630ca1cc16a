"""Orders, stock and invoices for a small shop: the code a user edits in the benchmark."""

from __future__ import annotations

import csv
import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

logger = logging.getLogger(__name__)

VAT_RATE = Decimal("0.20")
CENT = Decimal("0.01")
LOW_STOCK = 5


class OutOfStock(Exception):
    """An order asked for more than the warehouse holds."""

    def __init__(self, sku: str, wanted: int, available: int) -> None:
        super().__init__(f"{sku}: wanted {wanted}, only {available} left")
        self.sku = sku
        self.wanted = wanted
        self.available = available


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price: Decimal
    weight_kg: float = 0.0
    tags: tuple[str, ...] = ()

    def price_with_vat(self) -> Decimal:
        return (self.price * (1 + VAT_RATE)).quantize(CENT, ROUND_HALF_UP)


@dataclass
class Line:
    product: Product
    quantity: int
    discount: Decimal = Decimal("0")

    @property
    def subtotal(self) -> Decimal:
        gross = self.product.price * self.quantity
        return (gross * (1 - self.discount)).quantize(CENT, ROUND_HALF_UP)


@dataclass
class Order:
    number: int
    customer: str
    lines: list[Line] = field(default_factory=list)
    created: dt.datetime = field(default_factory=dt.datetime.now)
    shipped: bool = False

    def add(self, product: Product, quantity: int, discount: Decimal = Decimal("0")) -> None:
        if quantity <= 0:
            raise ValueError(f"quantity must be positive, not {quantity}")
        for line in self.lines:
            if line.product.sku == product.sku and line.discount == discount:
                line.quantity += quantity
                return
        self.lines.append(Line(product, quantity, discount))

    def total(self) -> Decimal:
        net = sum((line.subtotal for line in self.lines), Decimal("0"))
        return (net * (1 + VAT_RATE)).quantize(CENT, ROUND_HALF_UP)

    def weight(self) -> float:
        return sum(line.product.weight_kg * line.quantity for line in self.lines)


class Warehouse:
    """Stock levels per SKU, and the reservations of orders not shipped yet."""

    def __init__(self) -> None:
        self._stock: dict[str, int] = defaultdict(int)
        self._reserved: dict[int, dict[str, int]] = {}

    def receive(self, sku: str, quantity: int) -> None:
        self._stock[sku] += quantity
        logger.info("received %d x %s, now %d", quantity, sku, self._stock[sku])

    def available(self, sku: str) -> int:
        held = sum(parts.get(sku, 0) for parts in self._reserved.values())
        return self._stock[sku] - held

    def reserve(self, order: Order) -> None:
        wanted: dict[str, int] = defaultdict(int)
        for line in order.lines:
            wanted[line.product.sku] += line.quantity
        for sku, quantity in wanted.items():
            available = self.available(sku)
            if quantity > available:
                raise OutOfStock(sku, quantity, available)
        self._reserved[order.number] = dict(wanted)

    def ship(self, order: Order) -> None:
        parts = self._reserved.pop(order.number, None)
        if parts is None:
            raise KeyError(f"order {order.number} was never reserved")
        for sku, quantity in parts.items():
            self._stock[sku] -= quantity
            if self._stock[sku] < LOW_STOCK:
                logger.warning("stock of %s is low: %d", sku, self._stock[sku])
        order.shipped = True

    def cancel(self, order: Order) -> None:
        self._reserved.pop(order.number, None)

    def low_stock(self) -> list[str]:
        return sorted(sku for sku in self._stock if self.available(sku) < LOW_STOCK)


def load_catalogue(path: Path) -> dict[str, Product]:
    """Products from a CSV file with the columns sku, name, price, weight and tags."""
    products: dict[str, Product] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            tags = tuple(tag.strip() for tag in row.get("tags", "").split(";") if tag.strip())
            product = Product(
                sku=row["sku"].strip(),
                name=row["name"].strip(),
                price=Decimal(row["price"]),
                weight_kg=float(row.get("weight") or 0.0),
                tags=tags,
            )
            if product.sku in products:
                logger.warning("duplicate SKU %s in %s", product.sku, path)
            products[product.sku] = product
    return products


def shipping_cost(order: Order) -> Decimal:
    weight = order.weight()
    if weight == 0:
        return Decimal("0")
    if weight < 2:
        return Decimal("4.90")
    if weight < 10:
        return Decimal("8.90")
    return Decimal("8.90") + Decimal("0.75") * Decimal(int(weight - 10) + 1)


@dataclass
class Invoice:
    order: Order
    issued: dt.date
    shipping: Decimal

    @property
    def due(self) -> dt.date:
        return self.issued + dt.timedelta(days=30)

    def amount(self) -> Decimal:
        return self.order.total() + self.shipping

    def render(self) -> str:
        rows = [f"Invoice for order {self.order.number} ({self.order.customer})"]
        for line in self.order.lines:
            rows.append(f"  {line.quantity:3d} x {line.product.name:<30} {line.subtotal:>10}")
        rows.append(f"  shipping {self.shipping:>43}")
        rows.append(f"  total incl. VAT {self.amount():>35}")
        rows.append(f"  due {self.due.isoformat()}")
        return "\n".join(rows)


def invoice(order: Order, today: dt.date | None = None) -> Invoice:
    issued = today or dt.date.today()
    return Invoice(order, issued, shipping_cost(order))


def best_sellers(orders: list[Order], top: int = 5) -> list[tuple[str, int]]:
    sold: dict[str, int] = defaultdict(int)
    for order in orders:
        if not order.shipped:
            continue
        for line in order.lines:
            sold[line.product.sku] += line.quantity
    ranked = sorted(sold.items(), key=lambda item: (-item[1], item[0]))
    return ranked[:top]


def revenue_by_month(orders: list[Order]) -> dict[str, Decimal]:
    months: dict[str, Decimal] = defaultdict(Decimal)
    for order in orders:
        key = order.created.strftime("%Y-%m")
        months[key] += order.total()
    return dict(sorted(months.items()))


def process(orders: list[Order], warehouse: Warehouse) -> list[Invoice]:
    """Reserve, ship and invoice every order; orders that cannot be served are cancelled."""
    invoices = []
    for order in orders:
        try:
            warehouse.reserve(order)
        except OutOfStock as exc:
            logger.error("order %d: %s", order.number, exc)
            warehouse.cancel(order)
            continue
        warehouse.ship(order)
        invoices.append(invoice(order))
    return invoices
