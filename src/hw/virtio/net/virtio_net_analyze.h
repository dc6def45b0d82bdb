// Decoding a virtio-net section's "virtio" field without a device: QEMU 7.2 writes that
// field with hand-written code, so its vmdesc shows one opaque entry ({"name":"virtio",
// "type":"virtio","size":46143}); `ferry analyze` asks this file for the field's layout.
//
// The bytes are loaded into a plain image of the section (no device, no guest RAM), whose
// description is virtio_net_migration.h's own pieces where they are wire-shaped (config,
// queue records, virtio-net-device, ring addresses, modern proxy state) and plain buffers
// where the device's are not (PCI config, MSI-X table). What the device would know from its
// configuration is read from the bytes themselves, as they come: MSI-X vectors from the
// MSI-X capability in the PCI config space, the queue pairs from the queue count (2 per
// pair + ctrl), the driver features from the header. The image is then saved again with a
// vmdesc observer: that vmdesc (named fields with measured sizes) is the answer, and the
// re-encoded bytes must equal the input, so every byte is accounted for.
#pragma once

#include <cstdint>
#include <span>

#include "base/status.h"
#include "vmstate/vmdesc.h"

namespace ferry::virtio::net {

// The vmdesc of one virtio-net "virtio" field (QEMU 7.2's virtio_save layout, as Ferry
// writes it too): {"vmsd_name":"virtio","version":1,"fields":[...],"subsections":[...]}.
// Fails naming the field and offset where the bytes do not fit the layout, or when bytes
// are left over.
Result<vmstate::Json> describe_virtio_net_field(std::span<const uint8_t> bytes);

}  // namespace ferry::virtio::net
