# A database stand-in: swap the null_resource for your provider's database resource.
terraform {
  required_providers {
    null = {
      source  = "hashicorp/null"
      version = "2.1.2"
    }
  }
}

variable "name" {
  type = string
}

variable "size_gib" {
  type    = number
  default = 10
}

variable "labels" {
  type    = map(string)
  default = {}
}

resource "null_resource" "database" {
  triggers = {
    name     = var.name
    size_gib = var.size_gib
    labels   = jsonencode(var.labels)
  }

  provisioner "local-exec" {
    command = "echo provisioning database ${self.triggers.name}, ${self.triggers.size_gib} GiB"
  }

  provisioner "local-exec" {
    when    = destroy
    command = "echo deleting database ${self.triggers.name}"
  }
}

output "host" {
  value = "${var.name}.db.internal"
}

output "port" {
  value = 5432
}

output "password" {
  value     = "pw-${null_resource.database.id}"
  sensitive = true
}
