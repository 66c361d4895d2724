# The environment's database. A stand-in on the null provider so the example needs no cloud
# account: swap the null_resource for your provider's database resource.
terraform {
  required_providers {
    null = {
      source  = "hashicorp/null"
      version = "2.1.2"
    }
  }
}

variable "environment" {
  type = string
}

variable "size_gib" {
  type    = number
  default = 10
}

resource "null_resource" "database" {
  triggers = {
    environment = var.environment
    size_gib    = var.size_gib
  }

  provisioner "local-exec" {
    command = "echo provisioning the database of ${self.triggers.environment}, ${self.triggers.size_gib} GiB"
  }

  provisioner "local-exec" {
    when    = destroy
    command = "echo deleting the database of ${self.triggers.environment}"
  }
}

output "host" {
  value = "${var.environment}.db.internal"
}

output "port" {
  value = 5432
}

output "password" {
  value     = "pw-${null_resource.database.id}"
  sensitive = true
}
